//! stepbox-store: what stepbox keeps and decides before anything runs. The
//! typed capabilities and grants, the policy every host call is checked
//! against, the SQLite state database and the home directory. It knows
//! the backends' types (a grant confines a local job) but nothing of
//! WebAssembly (see docs/ARCHITECTURE.md, "The crates").
//!
//! - [`capability`]: the contract's capabilities, as one typed list;
//! - [`policy`]: the grant vocabulary, a step operator's grants, and the
//!   checks made from them;
//! - [`shape`]: what a flavor's component imports and exports, as stored;
//! - [`store`]: the state database (flavors, step operators, runs, jobs);
//! - [`trust_scope`]: where a key trusted to sign flavors counts;
//! - [`home`]: where state lives (`$STEPBOX_HOME`).

pub mod capability;
pub mod home;
pub mod policy;
pub mod shape;
pub mod store;
pub mod trust_scope;
