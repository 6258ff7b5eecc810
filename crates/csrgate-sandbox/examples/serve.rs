//! Runs a sandbox until killed: `cargo run -p csrgate-sandbox --example serve -- 127.0.0.1:0 /tmp/kubeconfig`.

use csrgate_sandbox::{Sandbox, SandboxConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()?;
    let kubeconfig_out = args.next().map(Into::into);
    let sandbox = Sandbox::start(SandboxConfig {
        listen,
        kubeconfig_out,
        ..SandboxConfig::default()
    })
    .await?;
    println!("{}", sandbox.url());
    sandbox.wait().await?;
    Ok(())
}
