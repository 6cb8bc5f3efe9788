// A Web Worker with its own engine: runs the CPU (wasm) model of a pair off the page's thread, so
// it never blocks the page's WebGPU submissions. Messages: {id, spec} in, {id, out, ms, end_epoch_ms} or {id, error} out.
import init, { runCell, modelBegin, modelChunk } from './webq_engine.js';
import { loadWeights } from './weights.js';

const describe = (e) => (e && e.name ? `${e.name}: ${e.message}` : String(e));
const ready = init();
let memory = null;
ready.then((engine) => { memory = engine.memory; });

self.onmessage = async ({ data: { id, spec } }) => {
  try {
    await ready;
    // The worker times itself: its answer may wait for the page's thread to be free to receive it.
    const start = performance.now();
    let fetched = null;
    if (spec.model) {
      try {
        fetched = await loadWeights(spec.model.file, modelBegin, modelChunk);
      } catch (e) {
        self.postMessage({ id, out: { error_class: 'bad_input', error: `loading ${spec.model.file}: ${describe(e)}` } });
        return;
      }
    }
    const out = JSON.parse(await runCell(JSON.stringify(spec)));
    out.wasm_memory_bytes = memory ? memory.buffer.byteLength : null;
    if (out.bench) Object.assign(out.bench, fetched || {}, { browser_memory_note: 'measured in a Web Worker: not available' });
    const end = performance.now();
    self.postMessage({ id, out, ms: end - start, end_epoch_ms: performance.timeOrigin + end });
  } catch (e) {
    self.postMessage({ id, error: describe(e) });
  }
};
