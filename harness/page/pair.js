// Two models at once (the seed's parallel execution): a WebGPU model cell on the page's thread and
// a CPU (wasm) model cell in a Web Worker, either at the same time (`concurrent`) or one after the
// other (`sequential`, the worker's after the page's), so a benchmark compares the two on the same
// work. The worker is started once and kept, its weights with it.
let worker = null;
let nextId = 0;
const pending = new Map();

function startWorker() {
  const w = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  w.onmessage = ({ data }) => {
    const p = pending.get(data.id);
    pending.delete(data.id);
    if (!p) return;
    if (data.error !== undefined) p.reject(new Error(`the worker: ${data.error}`));
    else p.resolve(data);
  };
  // A worker that fails to load or throws outside a message fails every cell it holds.
  w.onerror = (e) => {
    const why = new Error(`the worker failed: ${e.message || 'no message'}`);
    for (const p of pending.values()) p.reject(why);
    pending.clear();
    worker = null;
  };
  return w;
}

function inWorker(spec) {
  if (!worker) worker = startWorker();
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    worker.postMessage({ id, spec });
  });
}

const timed = async (f) => {
  const start = performance.now();
  const out = await f();
  return { out, ms: performance.now() - start };
};

// `runHere` runs a cell on the page (the shim's runCell). Answers each cell's output and the wall
// times: the pair's, the page's cell's, and the worker's cell's as the worker timed it (its answer
// may wait for the page's thread to be free to arrive; `cpu_seen_ms` is when it arrived).
export async function runPair({ gpu, cpu, mode }, runHere) {
  const start = performance.now();
  let g;
  let c;
  if (mode === 'concurrent') {
    // The worker's cell is posted first: the page's cell computes on this thread before its first await.
    const cpuRun = timed(() => inWorker(cpu));
    g = await timed(() => runHere(gpu));
    c = await cpuRun;
  } else if (mode === 'sequential') {
    g = await timed(() => runHere(gpu));
    c = await timed(() => inWorker(cpu));
  } else {
    throw new Error(`unknown pair mode ${mode}`);
  }
  const wall = performance.now() - start;
  return { mode, gpu: g.out, cpu: c.out.out, wall_ms: wall, gpu_ms: g.ms, cpu_ms: c.out.ms, cpu_seen_ms: c.ms,
    cpu_end_ms: c.out.end_epoch_ms - (performance.timeOrigin + start),
    hardware_concurrency: navigator.hardwareConcurrency ?? null };
}
