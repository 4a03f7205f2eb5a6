//! Property tests: the timer queue against a naive model (a Vec sorted on demand).
use proptest::prelude::*;
use quiesce_core::{TimerId, TimerQueue};

#[derive(Clone, Debug)]
enum Op {
    Insert(u8),
    Cancel(usize),
    PopDue(u8, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u8>().prop_map(Op::Insert),
        2 => any::<usize>().prop_map(Op::Cancel),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(d, inc)| Op::PopDue(d, inc)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn timer_queue_matches_model(ops in proptest::collection::vec(op(), 0..400)) {
        let mut queue = TimerQueue::new();
        // Model: (when, seq, value, id) of live timers.
        let mut model: Vec<(f64, u64, u32, TimerId)> = Vec::new();
        let mut issued: Vec<TimerId> = Vec::new();
        let mut seq = 0u64;
        for op in ops {
            match op {
                Op::Insert(when) => {
                    // Small deadline range so ties are frequent.
                    let when = f64::from(when % 16) / 4.0;
                    let id = queue.insert(when, seq as u32);
                    model.push((when, seq, seq as u32, id));
                    issued.push(id);
                    seq += 1;
                }
                Op::Cancel(i) => {
                    if issued.is_empty() { continue; }
                    let id = issued[i % issued.len()];
                    let expected = model.iter().position(|m| m.3 == id).map(|p| model.remove(p).2);
                    prop_assert_eq!(queue.cancel(id), expected);
                }
                Op::PopDue(deadline, inclusive) => {
                    let deadline = f64::from(deadline % 16) / 4.0;
                    model.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    let due = model.first().is_some_and(|m| if inclusive { m.0 <= deadline } else { m.0 < deadline });
                    let expected = if due { let m = model.remove(0); Some((m.0, m.2)) } else { None };
                    prop_assert_eq!(queue.pop_due(deadline, inclusive), expected);
                }
            }
            prop_assert_eq!(queue.len(), model.len());
            prop_assert!(queue.heap_len() <= 2 * queue.len() + 64);
            model.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            prop_assert_eq!(queue.peek_when(), model.first().map(|m| m.0));
            let sorted: Vec<u32> = queue.sorted().into_iter().map(|(_, v)| *v).collect();
            let expected: Vec<u32> = model.iter().map(|m| m.2).collect();
            prop_assert_eq!(sorted, expected);
        }
    }
}
