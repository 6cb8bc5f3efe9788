//! Progressive loading (the seed's): a model is read, stored in its precision and put on its
//! backend stage by stage in the order it runs (embeddings, then each layer, then the head), so
//! the first layer is on the device while the rest is still being quantized. Each stage ends in a
//! [`LoadEvent`]. A one-shot load goes through the same stages without a backend (the weights are
//! preloaded after), so the two are the same code and [`ModelStorage::digest`] can show that they
//! store the same bits.
//!
//! [`ModelStorage::digest`]: super::linear::ModelStorage::digest

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use serde::{Deserialize, Serialize};
use web_time::Instant;

use super::exec::{Backend, CpuExec};
use super::linear::Linear;
use super::ModelError;

/// One stage loaded: what it was, the bytes stored so far (the matrices of the stages done), the
/// fraction of the planned stages done, and the milliseconds since the load began (parsing
/// included).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadEvent {
    pub stage: String,
    /// The layer the stage holds (its first stage for the model's first layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<usize>,
    pub bytes: u64,
    pub fraction: f64,
    pub ms: f64,
}

/// Where the stages of a load go: uploaded as each ends (progressive, with a backend), or only
/// recorded (one-shot).
pub struct Loading<'e, B> {
    exec: Option<&'e mut B>,
    started: Instant,
    /// Stages planned per model (a cell may load two: Whisper's encoder and decoder).
    planned: Vec<(&'static str, usize)>,
    done: usize,
    bytes: u64,
    /// Milliseconds spent handing stages to the backend (inside the load, for a progressive one).
    upload_ms: f64,
    events: Vec<LoadEvent>,
}

impl Loading<'static, CpuExec> {
    /// A load that uploads nothing as it goes.
    pub fn one_shot() -> Self {
        Loading::new(None)
    }
}

impl<'e, B: Backend> Loading<'e, B> {
    /// `exec`: upload each stage to it as the stage ends; `None`: one-shot.
    pub fn new(exec: Option<&'e mut B>) -> Self {
        Loading {
            exec,
            started: Instant::now(),
            planned: Vec::new(),
            done: 0,
            bytes: 0,
            upload_ms: 0.0,
            events: Vec::new(),
        }
    }

    /// Says how many stages `model` will have; saying it again for the same model replaces it, so
    /// a caller that loads two models can announce the second before the first begins and the
    /// fraction never goes back.
    pub fn expect(&mut self, model: &'static str, stages: usize) {
        match self.planned.iter_mut().find(|(m, _)| *m == model) {
            Some(p) => p.1 = stages,
            None => self.planned.push((model, stages)),
        }
    }

    /// Ends a stage holding `matrices`: uploads them when progressive, and records the event.
    pub async fn stage(&mut self, stage: String, layer: Option<usize>, matrices: &[&Linear]) -> Result<(), ModelError> {
        if let Some(exec) = self.exec.as_deref_mut() {
            let t = Instant::now();
            for m in matrices {
                exec.preload(m).await?;
            }
            self.upload_ms += t.elapsed().as_secs_f64() * 1e3;
        }
        self.done += 1;
        self.bytes += matrices.iter().map(|m| m.stored_bytes() as u64).sum::<u64>();
        let planned = self.planned.iter().map(|p| p.1).sum::<usize>().max(self.done);
        let ms = self.started.elapsed().as_secs_f64() * 1e3;
        let fraction = self.done as f64 / planned as f64;
        self.events.push(LoadEvent { stage, layer, bytes: self.bytes, fraction, ms });
        #[cfg(target_arch = "wasm32")]
        crate::web::report_progress(self.events.last().expect("just pushed"));
        Ok(())
    }

    /// Milliseconds from the start of the load until the first layer was ready.
    pub fn first_layer_ms(&self) -> Option<f64> {
        self.events.iter().find(|e| e.layer == Some(0)).map(|e| e.ms)
    }

    /// What the load leaves for the benchmark record, giving the backend back: the milliseconds
    /// spent uploading, the first layer's time, the events.
    pub fn finish(self) -> (f64, Option<f64>, Vec<LoadEvent>) {
        (self.upload_ms, self.first_layer_ms(), self.events)
    }
}

/// Runs a future that cannot wait (a one-shot load: no backend, so no await point that pends)
/// to its end, on any target.
pub fn ready<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("a one-shot load has nothing to wait for"),
    }
}

/// Checks that a load's events are what a progress bar can show: at least one, bytes, fraction
/// and time never going back, the fraction within (0, 1] and 1 at the end.
pub fn check_progress(events: &[LoadEvent]) -> Result<(), String> {
    let last = events.last().ok_or("no load events")?;
    for (i, w) in events.windows(2).enumerate() {
        let (a, b) = (&w[0], &w[1]);
        if b.bytes < a.bytes || b.fraction < a.fraction || b.ms < a.ms {
            return Err(format!(
                "event {} (`{}`) goes back from event {i} (`{}`): bytes {} -> {}, fraction {} -> {}, ms {:.1} -> {:.1}",
                i + 1,
                b.stage,
                a.stage,
                a.bytes,
                b.bytes,
                a.fraction,
                b.fraction,
                a.ms,
                b.ms
            ));
        }
    }
    if let Some(e) = events.iter().find(|e| !(e.fraction > 0.0 && e.fraction <= 1.0)) {
        return Err(format!("event `{}`: fraction {} is not within (0, 1]", e.stage, e.fraction));
    }
    if (last.fraction - 1.0).abs() > 1e-9 {
        return Err(format!("the last event (`{}`) is at fraction {}, not 1", last.stage, last.fraction));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stage: &str, bytes: u64, fraction: f64, ms: f64) -> LoadEvent {
        LoadEvent { stage: stage.into(), layer: None, bytes, fraction, ms }
    }

    #[test]
    fn progress_that_goes_back_or_stops_short_is_refused() {
        let good = [event("embeddings", 10, 0.5, 1.0), event("layer 0", 30, 1.0, 2.0)];
        assert_eq!(check_progress(&good), Ok(()));
        let back = [event("embeddings", 10, 0.5, 1.0), event("layer 0", 5, 1.0, 2.0)];
        assert!(check_progress(&back).unwrap_err().contains("event 1 (`layer 0`) goes back"));
        let short = [event("embeddings", 10, 0.5, 1.0)];
        assert!(check_progress(&short).unwrap_err().contains("not 1"));
        assert!(check_progress(&[]).is_err());
        assert!(check_progress(&[event("x", 1, f64::NAN, 0.0)]).unwrap_err().contains("not within"));
    }

    #[test]
    fn a_second_model_announced_first_keeps_the_fraction_monotone() {
        let mut l = Loading::one_shot();
        l.expect("decoder", 2);
        l.expect("encoder", 2);
        for s in ["e0", "e1"] {
            ready(l.stage(s.into(), None, &[])).unwrap();
        }
        l.expect("decoder", 2);
        for s in ["d0", "d1"] {
            ready(l.stage(s.into(), None, &[])).unwrap();
        }
        let f: Vec<f64> = l.events.iter().map(|e| e.fraction).collect();
        assert_eq!(f, [0.25, 0.5, 0.75, 1.0]);
        assert_eq!(check_progress(&l.events), Ok(()));
    }
}
