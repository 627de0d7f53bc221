//! Numerical kernels working on f32 boxes handed to them by the store: interpolation and
//! warping ([`interp`]), gradients ([`gradient`]) and Gauss–Newton registration
//! ([`register`]).

pub mod deform;
pub mod discrete;
pub mod gradient;
pub mod interp;
pub mod local;
pub mod ncc;
pub mod pixel_search;
pub mod plane;
pub mod propagate;
pub mod register;
pub mod register_general;
pub mod residual;
pub mod register_volume;
pub mod strain;
pub mod tetmesh;
