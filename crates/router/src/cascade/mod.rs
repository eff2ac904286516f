//! Model cascades: the validators that decide whether a step's answer is accepted. The engine runs the steps
//! (`engine::cascade`).

pub(crate) mod validate;
