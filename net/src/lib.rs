//! Transport backends. Empty until issue 3 (kernel TCP over io_uring) lands; the crate exists so
//! the workspace has the layout of DESIGN.md and the store never grows a dependency on it.
