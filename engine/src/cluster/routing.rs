//! Which engine gets a call: among the live engines that serve the function and are not
//! draining, the one with the fewest outstanding calls of that function (Nightcore's
//! least-load), never one already holding its advertised capacity of them. Ties go round the
//! engines in turn, so a sequential client spreads its calls too. Pure bookkeeping, no I/O:
//! the gateway holds it under one short lock per pick and per answer.

use std::collections::{BTreeMap, HashMap};

use super::wire::FunctionInfo;

/// One function on one engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load {
    /// What the engine registered.
    pub info: FunctionInfo,
    /// Calls sent and not answered yet.
    pub outstanding: u32,
    /// Calls sent so far.
    pub calls: u64,
    /// Calls that failed (any error answer, or lost with the engine).
    pub failures: u64,
}

/// One engine as routing sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineLoad {
    /// Told the gateway it stops: gets no new call.
    pub draining: bool,
    /// Its functions by name.
    pub functions: HashMap<String, Load>,
}

impl EngineLoad {
    /// Calls outstanding on this engine, all functions.
    pub fn outstanding(&self) -> u32 {
        self.functions.values().map(|l| l.outstanding).sum()
    }
}

/// The answer of [`Routing::pick`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// Send it to this engine (its outstanding count already includes the call).
    Engine(u32),
    /// No live engine serves the function.
    NotFound,
    /// Every engine serving it is draining.
    Draining,
    /// Every engine serving it holds its capacity of calls.
    Full,
}

/// The routing table; see the [module docs](self).
#[derive(Debug, Default)]
pub struct Routing {
    engines: BTreeMap<u32, EngineLoad>,
    turn: usize,
}

impl Routing {
    /// An engine joined with `functions`.
    pub fn add(&mut self, id: u32, functions: &[FunctionInfo]) {
        let functions = functions
            .iter()
            .map(|f| {
                let load = Load {
                    info: f.clone(),
                    outstanding: 0,
                    calls: 0,
                    failures: 0,
                };
                (f.name.clone(), load)
            })
            .collect();
        self.engines.insert(
            id,
            EngineLoad {
                draining: false,
                functions,
            },
        );
    }

    /// An engine left (or was lost): it is out of the rotation at once.
    pub fn remove(&mut self, id: u32) -> Option<EngineLoad> {
        self.engines.remove(&id)
    }

    /// An engine is draining: no new calls.
    pub fn set_draining(&mut self, id: u32) {
        if let Some(e) = self.engines.get_mut(&id) {
            e.draining = true;
        }
    }

    /// Picks an engine for a call of `name`, other than `avoid`, and counts the call on it.
    pub fn pick(&mut self, name: &str, avoid: Option<u32>) -> Pick {
        let n = self.engines.len();
        if n == 0 {
            return Pick::NotFound;
        }
        self.turn = self.turn.wrapping_add(1);
        let start = self.turn % n;
        let (mut found, mut open) = (false, false);
        let mut best: Option<(u32, u32)> = None;
        for (id, e) in self.engines.iter().cycle().skip(start).take(n) {
            let Some(load) = e.functions.get(name) else {
                continue;
            };
            found = true;
            if e.draining || Some(*id) == avoid {
                continue;
            }
            open = true;
            if load.outstanding >= load.info.capacity {
                continue;
            }
            if best.is_none_or(|(_, o)| load.outstanding < o) {
                best = Some((*id, load.outstanding));
            }
        }
        match best {
            Some((id, _)) => {
                if let Some(load) = self.load_mut(id, name) {
                    load.outstanding += 1;
                    load.calls += 1;
                }
                Pick::Engine(id)
            }
            None if open => Pick::Full,
            None if found => Pick::Draining,
            None => Pick::NotFound,
        }
    }

    /// A call of `name` sent to engine `id` ended (`failed`: with an error or lost).
    pub fn done(&mut self, id: u32, name: &str, failed: bool) {
        if let Some(load) = self.load_mut(id, name) {
            load.outstanding = load.outstanding.saturating_sub(1);
            if failed {
                load.failures += 1;
            }
        }
    }

    /// What some live engine registered for `name` (payload limit, idempotence, timeout).
    pub fn function(&self, name: &str) -> Option<&FunctionInfo> {
        self.engines
            .values()
            .find_map(|e| e.functions.get(name))
            .map(|l| &l.info)
    }

    /// Every engine, by id.
    pub fn engines(&self) -> impl Iterator<Item = (u32, &EngineLoad)> {
        self.engines.iter().map(|(id, e)| (*id, e))
    }

    /// Engines joined and not draining.
    pub fn serving(&self) -> usize {
        self.engines.values().filter(|e| !e.draining).count()
    }

    fn load_mut(&mut self, id: u32, name: &str) -> Option<&mut Load> {
        self.engines.get_mut(&id)?.functions.get_mut(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, capacity: u32) -> FunctionInfo {
        FunctionInfo {
            name: name.into(),
            capacity,
            max_payload: 1024,
            timeout_ms: 1000,
            idempotent: false,
            allow_get: false,
        }
    }

    #[test]
    fn least_outstanding_wins_and_ties_rotate() {
        let mut r = Routing::default();
        for id in 1..=3 {
            r.add(id, &[f("Nop", 10)]);
        }
        // Each call answered before the next: every engine gets its turn.
        let mut seen = Vec::new();
        for _ in 0..6 {
            let Pick::Engine(id) = r.pick("Nop", None) else {
                panic!("no engine")
            };
            seen.push(id);
            r.done(id, "Nop", false);
        }
        seen.sort_unstable();
        assert_eq!(seen, [1, 1, 2, 2, 3, 3]);
        // Outstanding calls steer the next one to the least loaded engine.
        let (a, b) = (r.pick("Nop", Some(3)), r.pick("Nop", Some(3)));
        assert!(
            matches!((&a, &b), (Pick::Engine(x), Pick::Engine(y)) if x != y && *x != 3 && *y != 3),
            "{a:?} {b:?}"
        );
        assert_eq!(r.pick("Nop", None), Pick::Engine(3));
        let total: u32 = r.engines().map(|(_, e)| e.outstanding()).sum();
        assert_eq!(total, 3);
    }

    #[test]
    fn capacity_draining_and_absence() {
        let mut r = Routing::default();
        assert_eq!(r.pick("A", None), Pick::NotFound);
        r.add(1, &[f("A", 2)]);
        r.add(2, &[f("B", 1)]);
        assert_eq!(r.pick("A", None), Pick::Engine(1));
        assert_eq!(r.pick("A", None), Pick::Engine(1));
        assert_eq!(r.pick("A", None), Pick::Full);
        r.done(1, "A", true);
        assert_eq!(
            r.engines().next().map(|(_, e)| e.functions["A"].failures),
            Some(1)
        );
        assert_eq!(r.pick("A", None), Pick::Engine(1));
        assert_eq!(r.pick("B", None), Pick::Engine(2));
        assert_eq!(r.pick("C", None), Pick::NotFound);
        r.set_draining(2);
        assert_eq!(r.pick("B", None), Pick::Draining);
        assert_eq!(r.serving(), 1);
        assert!(r.remove(2).is_some());
        assert_eq!(r.pick("B", None), Pick::NotFound);
        assert!(r.function("A").is_some() && r.function("B").is_none());
        // The engine to avoid (where a call was just lost) is never picked.
        r.add(3, &[f("A", 5)]);
        for _ in 0..5 {
            assert_eq!(r.pick("A", Some(1)), Pick::Engine(3));
        }
        assert_eq!(r.pick("A", Some(1)), Pick::Full);
    }
}
