//! protocol (under construction)
