pub(crate) mod validate;
