//! Self-healing, decentralized: every node repairs the objects it leads (those whose
//! metadata it holds a copy of and to whose id it is the closest member), so no coordinator
//! is needed and, while the nodes agree on the members, one node works on each object.
//! `object` repairs one object; `walker` finds the objects and corrupt records of a core's
//! partition by walking its records in the background, at a bounded rate; `board` is what the
//! walkers report (ADMIN_HEALTH, the stats socket) and are asked (drain).

pub mod board;
pub mod object;
pub mod walker;
