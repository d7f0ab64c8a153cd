import * as stream from 'node:stream';

/**
 * node:stream's compose (Node ≥ 16.9; missing from @types/node 20): chains a source and transforms into one
 * Readable whose consumer drives the flow and which errors if any part errors. Used where the consumer is an
 * upload that must read the chain's last byte, which a pipeline ending in a Transform does not guarantee.
 */
type Compose = (...streams: (NodeJS.ReadableStream | NodeJS.ReadWriteStream | stream.Duplex)[]) => stream.Duplex;

export const composeStreams: Compose = (stream as unknown as { compose: Compose }).compose;
