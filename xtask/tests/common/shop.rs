//! What the tests do with the apps over HTTP, wherever the apps run (a container, a pod).

use std::time::Duration;

use anyhow::{ensure, Result};

/// Plain HTTP to a test's own container or pod, never through a proxy; cookies kept (the cart is in the session),
/// redirects shown rather than followed.
pub fn client(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .cookie_store(true)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// fake-shop's whole path to an order at `base`: the shop, a product in the cart, the checkout, the confirmation
/// page naming the order. Returns that page's path, `/order_confirmation/<order number>`.
pub fn place_an_order(client: &reqwest::blocking::Client, base: &str) -> Result<String> {
    ensure!(client.get(format!("{base}/shop")).send()?.status() == 200, "GET /shop");
    let added = client.post(format!("{base}/add_to_cart/1")).form(&[("quantity", "2")]).send()?;
    ensure!(added.status().is_redirection() || added.status().is_success(), "add_to_cart answered {}", added.status());
    ensure!(client.get(format!("{base}/cart")).send()?.status() == 200, "GET /cart");
    let checkout = [
        ("first_name", "Ada"),
        ("last_name", "Lovelace"),
        ("email", "ada@example.com"),
        ("mobile", "+44 20 7946 0000"),
        ("address1", "12 Analytical St"),
        ("address2", ""),
        ("city", "London"),
        ("state", "London"),
        ("country", "UK"),
        ("zip", "N1 9GU"),
        ("card_name", "Ada Lovelace"),
        ("card_number", "4111111111111111"),
        ("expiry_date", "12/39"),
        ("cvv", "123"),
    ];
    let placed = client.post(format!("{base}/checkout")).form(&checkout).send()?;
    ensure!(placed.status().is_redirection(), "checkout answered {}: {}", placed.status(), placed.text()?);
    let confirmation = placed.headers()["location"].to_str()?.to_owned();
    ensure!(confirmation.contains("/order_confirmation/"), "checkout redirected to {confirmation}");
    let path = confirmation.trim_start_matches(base).to_owned();
    let order_number = path.rsplit('/').next().unwrap_or_default().to_owned();
    let page = client.get(format!("{base}{path}")).send()?;
    ensure!(page.status() == 200, "GET {path} answered {}", page.status());
    ensure!(page.text()?.contains(&order_number), "the confirmation page names order {order_number}");
    Ok(path)
}
