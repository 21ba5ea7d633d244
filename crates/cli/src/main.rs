//! `hlbot`: the only binary.

fn main() {}
