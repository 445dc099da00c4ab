//! Loom model of the doorbell handshake (`core/src/bell.rs`), run on the real [`Bell`] code
//! over [`ModelRegion`] (see `core/src/model.rs` for how the memory and the futex are
//! modelled).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p gloam-core --release --test loom_bell` (or
//! `ci/loom.sh`). `LOOM_MAX_PREEMPTIONS` bounds the exploration (default here: 4; about 10 s on 2 CPUs, 6: about 4 min).
//!
//! **What is proved, for every interleaving and every value loom lets a load return:**
//!
//! - *No lost wake-up.* A producer publishes a message (a ring's `tail.store(Release)`) and
//!   calls [`Bell::notify`]; the consumer runs the loop of `RingChannel::recv_spin` and of the
//!   engine's poller: look, [`Bell::prepare_sleep`], look again, then [`Bell::cancel_sleep`] or
//!   [`Bell::sleep`]. The model's `futex_wait` never times out and never returns spuriously,
//!   so a consumer that sleeps while a message is published and unseen, with nobody left to
//!   wake it, blocks for good — which loom reports as a deadlock. Every model ends with the
//!   consumer having seen every message.
//! - *No needless wake.* A `futex_wake` happens only for a sleep the consumer announced: the
//!   wakes counted by the model never exceed the consumer's `prepare_sleep` calls (so two
//!   producers ringing one bell pay for one wake, not two), and a consumer that never
//!   announces a sleep is never woken.
//! - *Take-over.* Another thread of the consumer's process may take the bell while the
//!   consumer sleeps ([`Bell::take_over`], the engine's `RingPoller::hold`) and give it back
//!   (`prepare_sleep`, look, [`Bell::force_wake`] if a message came): a message published
//!   meanwhile is not lost either.
//! - *The model has teeth.* The same handshake over a region whose fences do nothing
//!   ([`ModelRegion::bell_without_fences`]) loses a wake-up, and loom finds it.
#![cfg(loom)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use gloam_core::bell::Bell;
use gloam_core::model::ModelRegion;
use gloam_core::ring::BELL;
use loom::sync::atomic::AtomicU32;
use loom::thread;

/// Runs `f` under loom with the preemption bound of `LOOM_MAX_PREEMPTIONS` (default 4).
fn check(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(4);
    }
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = runs.clone();
    builder.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        f()
    });
    eprintln!("{} executions explored", runs.load(Ordering::Relaxed));
}

/// A consumer's doorbell and the tails of the rings it reads (one per producer).
struct Rig {
    region: Arc<ModelRegion>,
    bell: Bell<ModelRegion>,
    tails: [AtomicU32; 2],
}

impl Rig {
    fn new(region: ModelRegion) -> Arc<Rig> {
        let region = Arc::new(region);
        Arc::new(Rig {
            bell: Bell::new(&region, BELL),
            region,
            tails: [AtomicU32::new(0), AtomicU32::new(0)],
        })
    }

    /// Messages published on every ring so far, as the consumer sees them.
    fn published(&self) -> u32 {
        self.tails.iter().map(|t| t.load(Ordering::Acquire)).sum()
    }

    /// The producer of ring `ring`: publishes `n` messages, ringing after each.
    fn produce(&self, ring: usize, n: u32) {
        for i in 1..=n {
            self.tails[ring].store(i, Ordering::Release);
            self.bell.notify();
        }
    }

    /// The consumer: reads until it has seen `want` messages, sleeping whenever it finds
    /// none. Returns how many sleeps it announced.
    fn consume(&self, want: u32) -> u32 {
        let (mut seen, mut announced) = (0, 0);
        loop {
            let now = self.published();
            if now > seen {
                seen = now;
                if seen == want {
                    return announced;
                }
                continue;
            }
            self.bell.prepare_sleep();
            announced += 1;
            if self.published() > seen {
                self.bell.cancel_sleep();
                continue;
            }
            self.bell.sleep(Duration::from_secs(1));
        }
    }

    fn wakes(&self) -> u32 {
        self.region.wakes(BELL)
    }
}

#[test]
fn a_published_message_is_never_slept_through() {
    check(|| {
        let rig = Rig::new(ModelRegion::bell());
        let producer = {
            let rig = rig.clone();
            thread::spawn(move || rig.produce(0, 2))
        };
        let announced = rig.consume(2);
        producer.join().unwrap();
        assert!(
            rig.wakes() <= announced,
            "{} wakes for {announced} announced sleeps",
            rig.wakes()
        );
    });
}

#[test]
fn two_producers_on_one_bell_pay_for_one_wake_per_sleep() {
    check(|| {
        let rig = Rig::new(ModelRegion::bell());
        let producers: Vec<_> = (0..2)
            .map(|ring| {
                let rig = rig.clone();
                thread::spawn(move || rig.produce(ring, 1))
            })
            .collect();
        let announced = rig.consume(2);
        for p in producers {
            p.join().unwrap();
        }
        assert!(
            rig.wakes() <= announced,
            "{} wakes for {announced} announced sleeps",
            rig.wakes()
        );
    });
}

#[test]
fn an_awake_consumer_costs_its_producer_no_wake() {
    check(|| {
        let rig = Rig::new(ModelRegion::bell());
        let producer = {
            let rig = rig.clone();
            thread::spawn(move || rig.produce(0, 2))
        };
        // Polls only (a consumer within its spin budget).
        while rig.published() < 2 {
            thread::yield_now();
        }
        producer.join().unwrap();
        assert_eq!(rig.wakes(), 0, "a wake while the consumer was awake");
    });
}

#[test]
fn a_taken_over_bell_is_given_back_without_losing_a_message() {
    check(|| {
        let rig = Rig::new(ModelRegion::bell());
        let producer = {
            let rig = rig.clone();
            thread::spawn(move || rig.produce(0, 1))
        };
        // RingPoller::hold / release, from another thread of the consumer's process.
        let taker = {
            let rig = rig.clone();
            thread::spawn(move || {
                if rig.bell.take_over() {
                    rig.bell.prepare_sleep();
                    if rig.published() > 0 {
                        rig.bell.force_wake();
                    }
                }
            })
        };
        rig.consume(1);
        producer.join().unwrap();
        taker.join().unwrap();
    });
}

#[test]
#[should_panic(expected = "deadlock")]
fn without_its_fences_the_handshake_loses_a_wake_up() {
    check(|| {
        let rig = Rig::new(ModelRegion::bell_without_fences());
        let producer = {
            let rig = rig.clone();
            thread::spawn(move || rig.produce(0, 1))
        };
        rig.consume(1);
        producer.join().unwrap();
    });
}
