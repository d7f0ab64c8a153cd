import type { CommandContext } from './context.js';

/**
 * What a command module gets from src/cli/main.ts to register its commands with. In a module of its own, so that the
 * command modules do not import main.ts, which loads them.
 */

/** A command body: returns its exit code (0 unless the contract says otherwise, e.g. wal fetch's 1). */
export type Handler = (ctx: CommandContext, ...args: unknown[]) => Promise<number | void>;

/** Wraps a handler: builds the context from the command's options, runs it, turns errors into exit codes. */
export type Action = (handler: Handler) => (...args: unknown[]) => Promise<void>;
