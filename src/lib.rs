//! floodgate daemon library: the parts of the daemon that embedders and tests use.

pub mod softrss;
