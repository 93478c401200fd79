//! Prints the Storefront CRD as YAML:
//! `cargo run -q -p storefront-operator --bin crdgen > crds/storefront.yaml`.

use std::io::Write;

fn main() -> anyhow::Result<()> {
    let yaml = storefront_operator::crd_yaml()?;
    std::io::stdout().lock().write_all(yaml.as_bytes())?;
    Ok(())
}
