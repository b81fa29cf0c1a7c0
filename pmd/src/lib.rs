//! floodgate-pmd: placeholder, see issue 3.
