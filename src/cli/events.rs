//! `strata events` (and `system events`): the store's event log, as
//! `docker events` prints it. Without `--until` it follows: it prints
//! what `--since` asks for (nothing before now without it), then new
//! events as they are recorded, until interrupted.

use std::time::Duration;

use super::output::template_error;
use super::{Context, ExitError};
use crate::events::{self, Event, EventFilter};
use crate::template::Template;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show all events created since timestamp
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
    /// Filter output based on conditions provided (type, event, container, image, label, network, volume)
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format the output using the given Go template
    #[arg(long)]
    pub format: Option<String>,
}

/// How often a follower looks for new events.
const POLL: Duration = Duration::from_millis(100);

fn usage(message: String) -> anyhow::Error {
    ExitError { code: 125, message }.into()
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let now = chrono::Utc::now();
    let since = args
        .since
        .as_deref()
        .map(|s| events::parse_timestamp(s, now))
        .transpose()
        .map_err(|e| usage(e.to_string()))?;
    let until = args
        .until
        .as_deref()
        .map(|s| events::parse_timestamp(s, now))
        .transpose()
        .map_err(|e| usage(e.to_string()))?;
    let filter = EventFilter::parse(&args.filter).map_err(|e| usage(e.to_string()))?;
    let format = args.format.as_deref().filter(|f| !f.is_empty());
    let template = match format {
        Some(f) if !is_json(f) => Some(Template::parse(f).map_err(|e| template_error(e, 1))?),
        _ => None,
    };
    let json = format.is_some_and(is_json);
    let print = |event: &Event| -> anyhow::Result<()> {
        if !filter.matches(event) {
            return Ok(());
        }
        if json {
            outln!("{}", serde_json::to_string(&event.to_message())?);
        } else if let Some(t) = &template {
            outln!(
                "{}",
                t.execute(&event.to_template_value())
                    .map_err(|e| template_error(e, 1))?
            );
        } else {
            outln!("{}", event.to_line());
        }
        Ok(())
    };
    let store = ctx.open_store()?;
    // Without --since, only what happens from now on (as Docker).
    let (mut after, since) = match since {
        Some(s) => (0, Some(s)),
        None => (events::last_seq(&store)?, None),
    };
    loop {
        let listed_at = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        for event in events::list(&store, after, since, until)? {
            after = event.seq;
            print(&event)?;
        }
        match until {
            // Done once the log has been read past --until.
            Some(u) if listed_at > u => return Ok(0),
            _ => std::thread::sleep(POLL),
        }
    }
}

/// `{{json .}}` prints the API's message as it is.
fn is_json(format: &str) -> bool {
    let compact: String = format.chars().filter(|c| !c.is_whitespace()).collect();
    compact == "{{json.}}" || format == "json"
}
