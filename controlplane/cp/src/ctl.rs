//! weirctl: the operator client (commands, tables, JSON).
