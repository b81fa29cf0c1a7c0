//! The plain reading of a rule list, for checking the compiled decision program against: parse
//! the frame, then try every rule in order, every matcher of it, and stop at the first terminal
//! rule that matches. No dispatch, no state (a rate limit counts as its rule deciding, a sample
//! as a match that goes on).
//!
//! ```
//! use floodgate::filter::reference::walk;
//! use floodgate::filter::{Action, Matcher, Rule};
//! let rules = vec![Rule::new("all", vec![Matcher::Len(vec![(0, 100)])], Action::Drop)];
//! assert_eq!(walk(&rules, &[0u8; 60], 60).decided_by, Some(0));
//! assert_eq!(walk(&rules, &[0u8; 200], 200).decided_by, None);
//! ```

use super::{Action, Parsed, Rule};

/// What the plain walk found for one frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Walk {
    /// Every rule that matched, in order, up to and including the deciding one (sample rules
    /// match and the walk goes on).
    pub matched: Vec<usize>,
    /// The first terminal rule that matched (drop, pass or rate limit); `None` for the default.
    pub decided_by: Option<usize>,
}

/// Walks `rules` in order over `frame` (`wire_len` bytes on the wire). Allocates; for tests.
pub fn walk(rules: &[Rule], frame: &[u8], wire_len: u32) -> Walk {
    let parsed = Parsed::walk(frame);
    let mut out = Walk::default();
    for (i, r) in rules.iter().enumerate() {
        if !r
            .matchers
            .iter()
            .all(|m| m.matches(frame, wire_len, &parsed))
        {
            continue;
        }
        out.matched.push(i);
        if !matches!(r.action, Action::Sample(_)) {
            out.decided_by = Some(i);
            break;
        }
    }
    out
}
