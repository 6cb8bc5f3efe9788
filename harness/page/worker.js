// A Web Worker with its own engine: runs the CPU (wasm) model of a pair off the page's thread, so
// it never blocks the page's WebGPU submissions. Messages: {id, spec} in, {id, out, ms, end_epoch_ms} or {id, error} out.
import { engineModule } from './engine.js';
import { describe, runInEngine } from './weights.js';

// The same bundle as the page's (engine.js decides alike in both), loaded without a top-level await:
// the handler must be in place when the module has run, or the page's first message finds none.
const ready = engineModule().then(async (engine) => ({ engine, wasm: await engine.default() }));

self.onmessage = async ({ data: { id, spec } }) => {
  try {
    const { engine: { runCell, modelBegin, modelChunk }, wasm } = await ready;
    // The worker times itself: its answer may wait for the page's thread to be free to receive it.
    const start = performance.now();
    const out = await runInEngine(spec, { runCell, modelBegin, modelChunk, memory: wasm.memory });
    if (out.bench) out.bench.browser_memory_note = 'measured in a Web Worker: not available';
    const end = performance.now();
    self.postMessage({ id, out, ms: end - start, end_epoch_ms: performance.timeOrigin + end });
  } catch (e) {
    self.postMessage({ id, error: describe(e) });
  }
};
