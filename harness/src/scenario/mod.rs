//! Scenarios: the YAML model, loading with positioned errors, and `${…}` substitution.

pub mod load;
pub mod model;
pub mod subst;

pub use load::{collect_files, load_file, parse_str, Loaded, ScenarioError};
pub use model::*;
