//! Image archives and layer tars: reading (without extracting), verifying,
//! writing, flattening. Nothing here writes outside the store or the
//! chosen output.

pub mod embedded;
pub mod layer;
pub mod resolve;
pub mod source;
pub mod sparse;
pub mod write;
