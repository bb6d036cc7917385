//! Containing panics of third-party parsers.
//!
//! A parser that panics on malformed input instead of returning an error
//! must not crash stepbox when the input comes from a user or a flavor.
//! [`catch`] runs such a parser under `catch_unwind` and turns a panic into
//! an error, without the panic message the default hook would print: the
//! caller reports the input as invalid in its own words.
//!
//! Known case: pep508_rs 0.9.2 panics (`expect`) on package and extra names
//! that end in `.`, `-` or `_` before more input (`six.=1`, `s[o. x]`),
//! found by `cargo fuzz run requirements`.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Whether a panic on this thread is being contained by [`catch`].
    static CONTAINING: Cell<bool> = const { Cell::new(false) };
}

/// Install, once, a panic hook that stays quiet for contained panics and
/// defers to the previous hook for every other one.
fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CONTAINING.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Run `parse`; a panic inside it becomes `Err` with the panic's message.
pub fn catch<T>(parse: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    let was = CONTAINING.with(|containing| containing.replace(true));
    // The parser's state is dropped with the panic; nothing it touched is used afterwards.
    let result = panic::catch_unwind(AssertUnwindSafe(parse));
    CONTAINING.with(|containing| containing.set(was));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the parser failed".to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_becomes_an_error_and_values_pass_through() {
        assert_eq!(catch(|| 7), Ok(7));
        let caught: Result<(), String> = catch(|| panic!("malformed input"));
        assert_eq!(caught, Err("malformed input".to_owned()));
        let formatted: Result<(), String> = catch(|| panic!("bad {}", 42));
        assert_eq!(formatted, Err("bad 42".to_owned()));
        assert_eq!(catch(|| catch(|| -> u8 { panic!("inner") })), Ok(Err("inner".to_owned())), "nested");
    }
}
