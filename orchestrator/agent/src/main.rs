use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bpfk_agent::run(bpfk_agent::Args::parse()).await?;
    Ok(())
}
