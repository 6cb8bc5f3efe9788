// Running a cell in one realm's engine (the page's, or a worker's): a model cell's weights file is
// streamed from the page server into the engine's memory chunk by chunk (the realm never holds the
// file twice) and kept for the next cell of the same model. Each realm has its own engine and so
// its own copy: this module's state is per realm.
let held = null;

export const describe = (e) => (e && e.name ? `${e.name}: ${e.message}` : String(e));

// The fetch, for the benchmark record: null when this realm already held the file.
async function loadWeights(file, modelBegin, modelChunk) {
  if (held === file) return null;
  held = null;
  const start = performance.now();
  let bytes = 0;
  const res = await fetch(file);
  if (!res.ok) throw new Error(`HTTP ${res.status} ${res.statusText}`);
  modelBegin(file, Number(res.headers.get('content-length') || 0));
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.length;
    modelChunk(value);
  }
  held = file;
  return { fetch_ms: performance.now() - start, fetch_bytes: bytes };
}

// Runs `spec` in the engine whose exports are given (`memory`: its linear memory, which only grows,
// so its size is the realm's high-water mark); a model cell's bench gets the fetch's figures.
export async function runInEngine(spec, { runCell, modelBegin, modelChunk, memory }) {
  let fetched = null;
  if (spec.model) {
    try {
      fetched = await loadWeights(spec.model.file, modelBegin, modelChunk);
    } catch (e) {
      return { error_class: 'bad_input', error: `loading ${spec.model.file}: ${describe(e)}` };
    }
  }
  const out = JSON.parse(await runCell(JSON.stringify(spec)));
  out.wasm_memory_bytes = memory ? memory.buffer.byteLength : null;
  if (out.bench && fetched) Object.assign(out.bench, fetched);
  return out;
}
