//! floodgate-sim: placeholder, see issue 2.
