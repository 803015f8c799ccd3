//! coolmesh exporter (being written).
