'use strict';
// Preloaded (`node --require test/bench/push-probe.cjs bin/pgdr wal push SEGMENT`) by test/bench/push-breakdown.ts:
// timestamps the moments of one real cold push without changing pgdr, by wrapping the Node functions the bundle calls
// at call time (Module._load, child_process.spawn, fs/promises open/link and FileHandle.sync). Times are
// milliseconds on the wall clock (performance.timeOrigin + now()), which the parent shares; written as JSON to
// PUSH_PROBE_OUT when the process exits. Only objects under PUSH_PROBE_REPO count as the store write.
const Module = require('node:module');
const childProcess = require('node:child_process');
const fsp = require('node:fs/promises');
const { writeFileSync } = require('node:fs');
const { performance } = require('node:perf_hooks');

const now = () => performance.timeOrigin + performance.now();
const repo = process.env.PUSH_PROBE_REPO ?? '/nonexistent';
const marks = { jsStart: now(), fsyncMs: 0, fsyncs: 0 };

const load = Module._load;
Module._load = function probeLoad(request, ...rest) {
  if (!/wal-push\.cjs$/.test(String(request))) return load.call(this, request, ...rest);
  marks.bundleStart = now();
  try {
    return load.call(this, request, ...rest);
  } finally {
    marks.bundleEnd = now();
  }
};

const spawn = childProcess.spawn;
childProcess.spawn = function probeSpawn(file, ...rest) {
  const child = spawn.call(this, file, ...rest);
  if (/(^|\/)zstd$/.test(String(file)) && marks.zstdSpawn === undefined) {
    marks.zstdSpawn = now();
    child.once('exit', () => {
      marks.zstdExit = now();
    });
  }
  return child;
};

const open = fsp.open;
fsp.open = async function probeOpen(path, flags, ...rest) {
  const inRepo = String(path).startsWith(repo);
  if (inRepo && String(flags).includes('w') && marks.writeStart === undefined) marks.writeStart = now();
  const handle = await open.call(this, path, flags, ...rest);
  if (inRepo) {
    const sync = handle.sync.bind(handle);
    handle.sync = async () => {
      const t0 = now();
      try {
        return await sync();
      } finally {
        marks.storeEnd = now();
        marks.fsyncMs += marks.storeEnd - t0;
        marks.fsyncs += 1;
      }
    };
  }
  return handle;
};

const link = fsp.link;
fsp.link = async function probeLink(...args) {
  try {
    return await link.apply(this, args);
  } finally {
    marks.linked = now();
  }
};

process.once('exit', () => {
  marks.exit = now();
  const usage = process.resourceUsage();
  marks.nodeCpuMs = (usage.userCPUTime + usage.systemCPUTime) / 1000;
  if (process.env.PUSH_PROBE_OUT) writeFileSync(process.env.PUSH_PROBE_OUT, JSON.stringify(marks));
});
