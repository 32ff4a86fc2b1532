//! Unit tests of the core writer.
