// The peer webq is measured against: onnxruntime-web, loaded from the page server (/ort/), running a
// one-node MatMulNBits model that holds the same packed 4-bit weights as webq's own cell.
// window.webqPeer.run(spec) -> { y (base64 f32), create_ms, first_ms, per_run_ms, log } or { error, log }.
// spec: { build: 'ort.webgpu.min.mjs' | 'ort.all.min.mjs', ep: 'webgpu' | 'wasm', model, x (base64, rows x K),
// rows, reps }.

const toBytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const toBase64 = (bytes) => {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
};
const describe = (e) => (e && e.name ? `${e.name}: ${e.message}` : String(e));

async function run(spec) {
  // ORT's verbose log (logSeverityLevel 0) arrives through console.error and console.log: it says which
  // execution provider each node was placed on.
  const log = [];
  const keep = (...args) => log.push(args.map(String).join(' '));
  const saved = { error: console.error, log: console.log, warn: console.warn };
  console.error = keep;
  console.log = keep;
  console.warn = keep;
  try {
    const ort = await import(`./ort/${spec.build}`);
    ort.env.wasm.wasmPaths = new URL('./ort/', location.href).href;
    ort.env.wasm.numThreads = 1;
    ort.env.logLevel = 'verbose';
    const options = { executionProviders: [spec.ep], logSeverityLevel: 0, logVerbosityLevel: 0 };
    // Outputs stay on the GPU between timed runs: one readback at the end, as webq's own timing does.
    if (spec.ep === 'webgpu') options.preferredOutputLocation = 'gpu-buffer';
    let t = performance.now();
    const session = await ort.InferenceSession.create(toBytes(spec.model), options);
    const create_ms = performance.now() - t;
    const xs = new Float32Array(toBytes(spec.x).buffer);
    const rows = spec.rows || 1;
    const feeds = { X: new ort.Tensor('float32', xs, [rows, xs.length / rows]) };
    t = performance.now();
    let out = await session.run(feeds);
    const y = await out.Y.getData();
    const first_ms = performance.now() - t;
    t = performance.now();
    for (let i = 0; i < spec.reps; i++) {
      if (i > 0 && out.Y.dispose) out.Y.dispose();
      out = await session.run(feeds);
    }
    await out.Y.getData();
    const per_run_ms = (performance.now() - t) / spec.reps;
    await session.release();
    return { y: toBase64(new Uint8Array(y.buffer, y.byteOffset, y.byteLength)), create_ms, first_ms, per_run_ms, log: placements(log) };
  } catch (e) {
    return { error: describe(e), log: log.slice(-30) };
  } finally {
    Object.assign(console, saved);
  }
}

// The lines of the verbose log that say where nodes ran.
function placements(log) {
  return log.filter((l) => /ExecutionProvider|placed on|assigned to|provider/i.test(l)).slice(0, 40);
}

window.webqPeer = { run };
