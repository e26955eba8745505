//! `strata top CONTAINER`
use super::output::tabulate;
use super::Context;
use crate::container::top::container_top;

#[derive(clap::Args, Debug)]
pub struct Args {
    pub container: String,
    /// ps options (ignored: the columns are those of `ps -ef`)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let (titles, rows) = container_top(&store, &args.container)?;
    let mut all = vec![titles];
    all.extend(rows);
    out!("{}", tabulate(&all));
    Ok(0)
}
