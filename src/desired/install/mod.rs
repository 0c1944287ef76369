//! The install paths besides the IstioOperator (`spec.istio.installWith`):
//! values files for Istio's Helm charts (`helm`) and Sail Operator's objects
//! (`sail`). Pure.

pub mod helm;
pub mod publish;
pub mod sail;
pub mod sail_plan;
