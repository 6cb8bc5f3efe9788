// A model cell's weights file, streamed from the page server into the engine's memory chunk by
// chunk (the realm never holds the file twice) and kept for the next cell of the same model. Each
// realm (the page, a worker) has its own engine and so its own copy: this module's state is per realm.
let held = null;

// The fetch, for the benchmark record: null when this realm already held the file.
export async function loadWeights(file, modelBegin, modelChunk) {
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
