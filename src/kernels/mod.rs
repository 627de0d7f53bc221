//! Numerical kernels working on f32 boxes handed to them by the store.
