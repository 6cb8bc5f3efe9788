// Provokes the errors webq classifies, in the browser's own APIs (not through the engine), so the
// classification table is tested against the browsers' real words. Each entry: the trigger, the
// kind its cause belongs to (decided by what the trigger does, never by the message), and the
// message the browser gave. Triggers the browser cannot run (no WebGPU, no WebNN) are left out.

const describe = (e) => (e && e.name ? `${e.name}: ${e.message}` : String(e));

async function attempt(entries, trigger, expected, fn) {
  try {
    const message = await fn();
    if (message) entries.push({ trigger, expected, message });
  } catch (e) {
    entries.push({ trigger, expected, message: describe(e) });
  }
}

async function webnn(entries, notes) {
  if (!navigator.ml) return;
  const ctx = await navigator.ml.createContext({ deviceType: 'cpu' });
  const f32 = (shape) => ({ dataType: 'float32', shape });
  await attempt(entries, 'webnn: a uint4 constant', 'PRECISION_NOT_SUPPORTED', async () => {
    new MLGraphBuilder(ctx).constant({ dataType: 'uint4', shape: [2] }, new Uint8Array(1));
  });
  await attempt(entries, 'webnn: matmul of int8 operands', 'PRECISION_NOT_SUPPORTED', async () => {
    const b = new MLGraphBuilder(ctx);
    const i8 = { dataType: 'int8', shape: [2, 2] };
    b.matmul(b.input('a', i8), b.input('b', i8));
  });
  await attempt(entries, 'webnn: matmul of [2,3] and [4,5]', 'GRAPH_BUILDING_ERROR', async () => {
    const b = new MLGraphBuilder(ctx);
    b.matmul(b.input('a', f32([2, 3])), b.input('b', f32([4, 5])));
  });
  await attempt(entries, 'webnn: per-row int8 scales, transposed, then matmul (the backend cannot compile it)', 'GRAPH_BUILDING_ERROR', async () => {
    const b = new MLGraphBuilder(ctx);
    const codes = b.constant({ dataType: 'int8', shape: [8, 32] }, new Int8Array(256).fill(3));
    const scale = b.constant(f32([8, 1]), new Float32Array(8).fill(0.5));
    const zero = b.constant({ dataType: 'int8', shape: [8, 1] }, new Int8Array(8));
    const w = b.transpose(b.dequantizeLinear(codes, scale, zero));
    await b.build({ y: b.matmul(b.input('x', f32([1, 32])), w) });
  });
  await attempt(entries, 'webnn: a tensor of 2^34 floats', 'RESOURCE_LIMIT', async () => {
    await ctx.createTensor({ ...f32([131072, 131072]), readable: true });
  });
  await attempt(entries, 'webnn: an input with a dimension over int32', 'RESOURCE_LIMIT', async () => {
    notes.push(`webnn maxTensorByteLength ${ctx.opSupportLimits().maxTensorByteLength}`);
    new MLGraphBuilder(ctx).input('x', { dataType: 'int8', shape: [2 ** 31] });
  });
  const lost = await navigator.ml.createContext({ deviceType: 'cpu' });
  lost.destroy();
  await attempt(entries, 'webnn: a tensor from a destroyed context', 'DEVICE_LOST', async () => {
    await lost.createTensor({ ...f32([2]), readable: true });
  });
  await attempt(entries, 'webnn: a builder on a destroyed context', 'DEVICE_LOST', async () => {
    new MLGraphBuilder(lost).input('x', f32([2]));
  });
}

async function webgpu(entries, notes) {
  if (!navigator.gpu) return;
  // Chrome's adapters make one device each ("consumed"): a fresh adapter for every device.
  const fresh = async (desc) => (await navigator.gpu.requestAdapter()).requestDevice(desc);
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) return;
  const device = await fresh();
  const scoped = async (filter, fn) => {
    device.pushErrorScope(filter);
    fn();
    const e = await device.popErrorScope();
    return e ? e.message : null;
  };
  await attempt(entries, 'webgpu: a buffer over maxBufferSize', 'RESOURCE_LIMIT', () => scoped('validation', () => {
    device.createBuffer({ size: device.limits.maxBufferSize + 4, usage: GPUBufferUsage.STORAGE });
  }));
  await attempt(entries, 'webgpu: a storage binding over maxStorageBufferBindingSize', 'RESOURCE_LIMIT', () => scoped('validation', () => {
    const size = Math.min(device.limits.maxStorageBufferBindingSize + 256, device.limits.maxBufferSize);
    if (size <= device.limits.maxStorageBufferBindingSize) return;
    const buffer = device.createBuffer({ size, usage: GPUBufferUsage.STORAGE });
    const layout = device.createBindGroupLayout({ entries: [{ binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'read-only-storage' } }] });
    device.createBindGroup({ layout, entries: [{ binding: 0, resource: { buffer } }] });
  }));
  await attempt(entries, 'webgpu: requiredLimits above the adapter', 'RESOURCE_LIMIT', async () => {
    await fresh({ requiredLimits: { maxBufferSize: adapter.limits.maxBufferSize * 2 } });
  });
  const small = await fresh({ requiredLimits: { maxBufferSize: 1 << 20, maxStorageBufferBindingSize: 1 << 20 } });
  notes.push(`webgpu: asked for 1 MiB, got maxBufferSize ${small.limits.maxBufferSize} maxStorageBufferBindingSize ${small.limits.maxStorageBufferBindingSize}`);
  small.destroy();
  if (!adapter.features.has('shader-f16')) {
    await attempt(entries, 'webgpu: `enable f16` without shader-f16', 'PRECISION_NOT_SUPPORTED', () => scoped('validation', () => {
      device.createShaderModule({ code: 'enable f16;\n@compute @workgroup_size(1) fn main() { let x: f16 = 1.0h; }' });
    }));
  }
  await attempt(entries, 'webgpu: WGSL with an undeclared identifier', 'UNKNOWN', () => scoped('validation', () => {
    device.createShaderModule({ code: '@compute @workgroup_size(1) fn main() { let x = undeclared_thing; }' });
  }));
  device.destroy();
  const info = await device.lost;
  // The browser's own words only: a prefix written here would make the classification pass by itself.
  entries.push({ trigger: 'webgpu: device.lost after destroy()', expected: 'DEVICE_LOST', message: info.message });
  notes.push(`webgpu: device.lost reason '${info.reason}'`);
}

export async function provokeErrors() {
  const entries = [];
  const notes = [];
  for (const [name, fn] of [['webnn', webnn], ['webgpu', webgpu]]) {
    try {
      await fn(entries, notes);
    } catch (e) {
      notes.push(`${name}: stopped early: ${describe(e)}`);
    }
  }
  return { userAgent: navigator.userAgent, entries, notes };
}
