//! auth (under construction)
