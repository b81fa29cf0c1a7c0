//! floodgate: steer a flood into an ixgbe VF, filter it at line rate, reinject survivors via TAP.

pub mod privdrop;
pub mod steering;
pub mod tap;
