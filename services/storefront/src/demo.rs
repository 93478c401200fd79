//! The demo data `storefront up` seeds on every start, idempotently: an admin, a delivery
//! partner and a shopper account, and the partner's delivery-partner record (on shift,
//! serving every postal code), and stock for the demo catalog. The demo catalog is the search
//! service's own (`search.seed_demo`); its bulk import emits no catalog events, so the order
//! service's stock rows for it are created here (each product's stock hint, once).

use storefront_kit::auth::Role;

/// The password of every demo account (printed at start; for a laptop, not for production).
pub const DEMO_PASSWORD: &str = "storefront-demo";

/// The demo accounts: (e-mail, display name, roles).
pub const ACCOUNTS: [(&str, &str, &[Role]); 3] = [
    ("admin@storefront.test", "Ada Admin", &[Role::Admin]),
    ("partner@storefront.test", "Pat Partner", &[Role::Partner]),
    ("shopper@storefront.test", "Sam Shopper", &[Role::Customer]),
];

/// What was seeded in this start, for the summary printed once everything is bound.
#[derive(Debug, Default)]
pub struct Seeded {
    /// (e-mail, account id, roles) of each demo account.
    pub accounts: Vec<(&'static str, String, &'static [Role])>,
    /// Whether the demo partner was created now (false: it already existed).
    pub partner_created: Option<bool>,
    /// Stock rows created for the demo catalog in this start.
    pub stock_rows: usize,
}

impl Seeded {
    fn account_id(&self, email: &str) -> Option<&str> {
        self.accounts
            .iter()
            .find(|(e, _, _)| *e == email)
            .map(|(_, id, _)| id.as_str())
    }

    /// Prints the shop URL and the demo accounts.
    pub fn print(&self, shop_url: Option<&str>) {
        if let Some(url) = shop_url {
            println!("storefront: the shop is open at {url}/");
        }
        if !self.accounts.is_empty() {
            println!("storefront: demo accounts (password {DEMO_PASSWORD}):");
            for (email, _, roles) in &self.accounts {
                let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                println!("storefront:   {email:<26} {}", roles.join(", "));
            }
        }
    }
}

/// Creates the demo accounts, or gives existing ones their roles back.
pub async fn accounts(
    auth: &storefront_auth::Application,
    seeded: &mut Seeded,
) -> std::io::Result<()> {
    for (email, name, roles) in ACCOUNTS {
        let id =
            storefront_auth::seed_account(auth.state(), email, DEMO_PASSWORD, name, roles).await?;
        seeded.accounts.push((email, id, roles));
    }
    println!("storefront: seeded {} demo accounts", seeded.accounts.len());
    Ok(())
}

/// Creates the demo delivery partner for the demo partner account unless it exists.
pub async fn partners(
    delivery: &storefront_delivery::Application,
    seeded: &mut Seeded,
) -> std::io::Result<()> {
    use storefront_delivery::domain::partner::{Capacity, NewPartner, ServiceArea};
    let (email, name, _) = ACCOUNTS[1];
    let Some(account_id) = seeded.account_id(email).map(str::to_string) else {
        // Auth is not in this process: nothing to link a partner to.
        return Ok(());
    };
    let repo = &delivery.state().repo;
    let other = |e: &dyn std::fmt::Display| std::io::Error::other(format!("seed partner: {e}"));
    if repo
        .partner_by_account(&account_id)
        .await
        .map_err(|e| other(&e))?
        .is_some()
    {
        seeded.partner_created = Some(false);
        return Ok(());
    }
    let partner = NewPartner {
        account_id,
        name: name.to_string(),
        email: email.to_string(),
        phone: Some("+44 20 7946 0000".to_string()),
        on_shift: true,
        service_area: ServiceArea {
            // Every postal code: each starts with a digit or a letter.
            postal_prefixes: ('0'..='9').chain('A'..='Z').map(String::from).collect(),
            circle: None,
        },
        capacity: Capacity {
            max_concurrent: 50,
            max_items: 500,
            max_weight_grams: None,
        },
    }
    .into_partner(chrono::Utc::now())
    .map_err(|errors| {
        let text: Vec<String> = errors
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect();
        other(&text.join("; "))
    })?;
    repo.create_partner(&partner).await.map_err(|e| other(&e))?;
    seeded.partner_created = Some(true);
    println!("storefront: seeded the demo delivery partner");
    Ok(())
}

/// Gives every product of the demo catalog a stock row (its stock hint) unless it has one.
/// Each row is created with a fixed event id (UUIDv5 of the product id), so the order
/// service's dedupe makes this idempotent even across restarts; when the last demo product
/// already has a row the whole catalog is skipped at once.
pub async fn stock(
    order: &storefront_order::Application,
    search: &storefront_search::Settings,
    seeded: &mut Seeded,
) -> std::io::Result<()> {
    if !search.seed_demo || search.demo_products == 0 {
        return Ok(());
    }
    let products = storefront_search::demo::products(
        storefront_search::demo::DEFAULT_SEED,
        search.demo_products,
    );
    let repo = &order.state().repo;
    let other = |e: &dyn std::fmt::Display| std::io::Error::other(format!("seed stock: {e}"));
    if let Some(last) = products.last()
        && repo
            .stock(last.id.as_str())
            .await
            .map_err(|e| other(&e))?
            .is_some()
    {
        return Ok(());
    }
    for p in &products {
        let event = uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            format!("storefront-demo-stock:{}", p.id.as_str()).as_bytes(),
        );
        let available = i64::from(p.stock_hint.unwrap_or(100));
        if repo
            .init_stock(event, p.id.as_str(), available)
            .await
            .map_err(|e| other(&e))?
        {
            seeded.stock_rows += 1;
        }
    }
    println!(
        "storefront: seeded stock for {} demo products",
        seeded.stock_rows
    );
    Ok(())
}
