//! What system call each other thread is blocked in, read from `/proc` while this thread keeps
//! the GIL, with the current value of the word a futex wait sleeps on.
//!
//! Python's own file reads release the GIL, and a thread the loop just woke can then be caught
//! queueing for the GIL's mutex: a private futex wait with no timeout, which reads exactly like
//! a thread parked on a lock. Read here, with the GIL held throughout, it can only be seen
//! running or in the GIL's timed wait (both hold the clock).
//!
//! A futex wait sleeps only while its word still holds the value it was entered with. The
//! kernel can report a thread as still in the wait for a while after another thread changed the
//! word and woke it (a lock released, a queue item posted): the word, read from this process's
//! own memory, tells such a thread (on its way out) from one that stays parked.

use std::fs::File;
#[cfg(unix)]
use std::os::unix::fs::FileExt;

use pyo3::prelude::*;

/// The 32-bit word at `address` of this process, read through `/proc/self/mem` (an address
/// that is no longer mapped reads as None instead of faulting).
#[cfg(unix)]
fn word_at(memory: Option<&File>, address: u64) -> Option<u32> {
    let mut bytes = [0u8; 4];
    memory?.read_exact_at(&mut bytes, address).ok()?;
    Some(u32::from_ne_bytes(bytes))
}

#[cfg(not(unix))]
fn word_at(_memory: Option<&File>, _address: u64) -> Option<u32> {
    None
}

/// For each native thread id: its `/proc/self/task/<id>/syscall` line (None where it cannot be
/// read: the thread exited, or there is no `/proc`), and the 32-bit word at the line's first
/// argument when that is an address (what a futex wait compares against its value).
#[pyfunction]
pub fn thread_system_calls(native_ids: Vec<u64>) -> Vec<(Option<String>, Option<u32>)> {
    let memory = File::open("/proc/self/mem").ok();
    native_ids
        .into_iter()
        .map(|id| {
            let Ok(line) = std::fs::read_to_string(format!("/proc/self/task/{id}/syscall")) else {
                return (None, None);
            };
            let address = line
                .split_whitespace()
                .nth(1)
                .and_then(|field| u64::from_str_radix(field.trim_start_matches("0x"), 16).ok())
                .filter(|address| *address != 0 && address % 4 == 0);
            let word = address.and_then(|address| word_at(memory.as_ref(), address));
            (Some(line), word)
        })
        .collect()
}
