//! Waiting for the GPU: for a buffer's mapping or for the queue's work to be done.
//!
//! Natively `device.poll` blocks until the work is done and runs the callbacks. In a browser the
//! browser resolves them, and Firefox does so only when its GPU process polls the device: on a
//! 100 ms timer (bugzilla 1870699), or when the queue sees a submission. Every readback there took
//! about 100 ms whatever the work (README, "Tracing"). So a wait in a browser submits an empty
//! command buffer at once (work already done is then seen, a small readback takes about 5 ms in
//! Firefox instead of 100) and again after 1, 2, 4 and 8 ms, then every 16 ms while it waits.
//! Chromium resolves its waits without them; an empty submission costs it microseconds.

use futures_channel::oneshot;

use super::GpuError;

/// Awaits `rx`, whose sender a wgpu callback holds (`map_async`, `on_submitted_work_done`);
/// `dropped` is the error for a callback dropped without being called.
pub(super) async fn completion<T>(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    rx: oneshot::Receiver<T>,
    dropped: fn() -> GpuError,
) -> Result<T, GpuError> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = queue;
        device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| GpuError::DeviceLost(e.to_string()))?;
        rx.await.map_err(|_| dropped())
    }
    #[cfg(target_arch = "wasm32")]
    {
        nudged(device, queue, rx).await.map_err(|_| dropped())
    }
}

/// The pauses between nudges, in milliseconds: short first (most waits in a model are for one
/// op of a few milliseconds), then every 16 ms for long work. Browsers may stretch short timers.
#[cfg(target_arch = "wasm32")]
const NUDGE_MS: [i32; 5] = [1, 2, 4, 8, 16];

#[cfg(target_arch = "wasm32")]
async fn nudged<T>(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    mut rx: oneshot::Receiver<T>,
) -> Result<T, oneshot::Canceled> {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Poll;

    let nudge = || queue.submit([device.create_command_encoder(&Default::default()).finish()]);
    nudge();
    let mut pauses = NUDGE_MS.iter().copied().chain(std::iter::repeat(NUDGE_MS[NUDGE_MS.len() - 1]));
    let mut next_pause = move || pause(pauses.next().expect("an endless iterator"));
    let mut timer = next_pause();
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = Pin::new(&mut rx).poll(cx) {
            return Poll::Ready(r);
        }
        while Pin::new(&mut timer).poll(cx).is_ready() {
            nudge();
            timer = next_pause();
        }
        Poll::Pending
    })
    .await
}

/// A promise that resolves after `ms` milliseconds (`setTimeout`, on a page or in a worker).
#[cfg(target_arch = "wasm32")]
fn pause(ms: i32) -> wasm_bindgen_futures::JsFuture {
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        let global = js_sys::global();
        if let Ok(f) = js_sys::Reflect::get(&global, &"setTimeout".into()) {
            let _ = js_sys::Function::from(f).call2(&global, &resolve, &ms.into());
        }
    });
    wasm_bindgen_futures::JsFuture::from(promise)
}
