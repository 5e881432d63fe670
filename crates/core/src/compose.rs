//! Docker Compose rendering (in progress).
