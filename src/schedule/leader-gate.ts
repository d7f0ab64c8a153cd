import { parsePatroniEndpoint } from '../cluster/patroni-api.js';

/**
 * "Is the local member the leader?", asked right before every scheduled run. `pgdr schedule` runs on every member
 * of a Patroni cluster; the gate makes exactly the leader's scheduler act, and it follows a failover with no
 * configuration change: the next run happens on the new leader's node.
 */
export type LeaderAnswer =
  | { kind: 'leader'; detail: string }
  | { kind: 'not-leader'; detail: string }
  /** The gate could not tell (Patroni down, odd answer): the run is skipped, never guessed. */
  | { kind: 'unknown'; detail: string };

export interface LeaderGate {
  readonly description: string;
  check(): Promise<LeaderAnswer>;
}

/** For hosts without Patroni (a single server): every run goes ahead. */
export class AlwaysLeaderGate implements LeaderGate {
  readonly description = 'none (every run goes ahead)';
  async check(): Promise<LeaderAnswer> {
    return { kind: 'leader', detail: 'leader gate disabled' };
  }
}

/**
 * Asks the local Patroni REST API GET /leader: 200 when this member holds the leader key (a primary, or a standby
 * cluster's standby leader), 503 when it does not. Anything else, or no answer, is `unknown`.
 */
export class PatroniLeaderGate implements LeaderGate {
  readonly endpoint: string;
  readonly description: string;

  constructor(
    endpoint: string,
    private readonly options: { timeoutMs?: number; fetch?: typeof fetch } = {},
  ) {
    this.endpoint = parsePatroniEndpoint(endpoint);
    this.description = `Patroni ${this.endpoint}/leader`;
  }

  async check(): Promise<LeaderAnswer> {
    const doFetch = this.options.fetch ?? fetch;
    const timeoutMs = this.options.timeoutMs ?? 5_000;
    let response: Response;
    try {
      response = await doFetch(`${this.endpoint}/leader`, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'application/json' } });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code;
      const why = (err as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (cause ?? (err as Error).message);
      return { kind: 'unknown', detail: `Patroni at ${this.endpoint} is unreachable: ${why}` };
    }
    // The body (member status) is not needed; read it so the connection can be reused.
    await response.arrayBuffer().catch(() => undefined);
    if (response.status === 200) return { kind: 'leader', detail: `${this.endpoint} holds the leader key` };
    if (response.status === 503) return { kind: 'not-leader', detail: `${this.endpoint} is not the leader` };
    return { kind: 'unknown', detail: `Patroni at ${this.endpoint} answered GET /leader with HTTP ${response.status}` };
  }
}
