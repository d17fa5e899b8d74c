//! `flowc explain CODE`: a longer story for each diagnostic code, with a wrong
//! and a right example, as `rustc --explain` does.

use crate::diag::Code;

/// (explanation, wrong example, right example)
pub fn explain(code: Code) -> (&'static str, &'static str, &'static str) {
    use Code::*;
    match code {
        Syntax => ("The text does not follow the grammar of `.flow`. The message says what was expected where; parsing restarts at the next declaration, so later declarations are still checked.",
            "campaign welcome {\n  trigger manual\n  sned email.marketing hello\n}",
            "campaign welcome {\n  trigger manual\n  send email.marketing hello\n}"),
        UnknownTemplate => ("A `send` names a template that is neither declared with `template NAME { … }` in the files this one sees, nor in the registry passed with `--templates`.",
            "send email.marketing welcom_email",
            "template welcome_email { channel email message marketing status published }\n...\nsend email.marketing welcome_email"),
        ChannelMismatch => ("Templates are made for one channel. The step's `CHANNEL.MESSAGE` must name the template's channel, as the builder only offers matching templates.",
            "template promo { channel sms message promotional status published }\nsend email.marketing promo",
            "send sms.promotional promo"),
        MessageTypeMismatch => ("The template's message type (marketing, transactional, …) must equal the step's: consent and pricing depend on it.",
            "template receipt { channel email message transactional status published }\nsend email.marketing receipt",
            "send email.transactional receipt"),
        UnknownMessageType => ("Each channel declares its message types in the stdlib (`flowc` ships `stdlib/channels.flow`). The step names one the channel does not have.",
            "send sms.marketing promo", "send sms.promotional promo"),
        UnknownChannel => ("The channel is not declared. The stdlib declares email, sms, rcs, whatsapp and push.",
            "send mail.marketing welcome", "send email.marketing welcome"),
        TemplateNotPublished => ("A template in `draft` or `rejected` status cannot be sent: launch is blocked until it is published. `--allow-draft` turns this into a warning while you iterate.",
            "template t { channel email message marketing status draft }", "template t { channel email message marketing status published }"),
        InvalidFallback => ("A fallback runs when the device cannot receive a capability channel (rcs, whatsapp, push). It is invalid on a channel without a capability rule, or when it uses a channel other than the one the channel declares as its fallback.",
            "send rcs.promotional offer fallback email.marketing offer_mail", "send rcs.promotional offer fallback sms.promotional offer_sms"),
        MissingFallback => ("Sends on capability channels skip contacts whose device cannot receive them. Say what should happen: a fallback message, or `fallback none` to skip them on purpose.",
            "send rcs.promotional offer", "send rcs.promotional offer fallback sms.promotional offer_sms"),
        UnknownSegment => ("`audience NAME` and `in_segment(NAME)` must name a declared segment.",
            "audience vips", "segment vip = lifetime_value >= 1000\n...\naudience vip"),
        UnknownAttribute => ("Conditions use the contact's fields (the stdlib's built-ins plus your `contact { … }`), or, in a trigger's or `happened`'s `where`, the event's properties.",
            "if plann == pro { … }", "if plan == pro { … }"),
        UnknownEvent => ("Triggers and `happened` name events declared with `event NAME { … }`; the stdlib declares the system and engagement events.",
            "trigger event order.complete", "trigger event order.completed"),
        TypeMismatch => ("Both sides of a comparison must have the same type; `and`, `or` and `not` need conditions; `has` needs a set<string>.",
            "if lifetime_value > \"1000\" { … }", "if lifetime_value > 1000 { … }"),
        UnknownEnumValue => ("A value compared with an enum attribute must be one of the enum's values.",
            "if plan == premium { … }   // plan: enum(free, pro, enterprise)", "if plan == pro { … }"),
        AbVariantCount => ("An `ab_test` splits contacts across 2 to 4 variants. Use an empty variant as a holdout.",
            "ab_test offer { variant a 100% { … } }", "ab_test offer {\n  variant a 90% { … }\n  variant holdout 10% { }\n}"),
        AbWeights => ("Variant weights are percentages of the contacts entering the test: each above 0, summing to exactly 100.",
            "variant a 50% { … }\nvariant b 40% { … }", "variant a 50% { … }\nvariant b 50% { … }"),
        InvalidDuration => ("A `wait`, and the `timeout` of a `wait until`, lasts more than zero and at most 365 days.", "wait 0m", "wait 2d"),
        UnknownTimezone => ("Scheduled triggers and timezone values use IANA zone names, checked against the tz database.",
            "trigger scheduled at 2026-12-01 09:00 \"Europe/Pari\"", "trigger scheduled at 2026-12-01 09:00 \"Europe/Paris\""),
        DuplicateLabel => ("Labels are the stable ids of steps across versions of a campaign, so each is unique in its campaign; so are `ab_test` names, and variant names within one test.",
            "hello: send email.marketing a\nhello: send email.marketing b", "hello: send email.marketing a\nreminder: send email.marketing b"),
        DuplicateDeclaration => ("A template, segment, event, channel, contact field, campaign or price is declared twice among the files one check sees (imports and the registry included).",
            "segment vip = …\nsegment vip = …", "segment vip = …\nsegment big_spender = …"),
        UnknownStep => ("`opened(x)`, `clicked(x)` and `delivered(x)` name a labelled `send` in the same campaign, and are only meaningful in its conditions.",
            "if opened(welcome) { … }   // no send is labelled welcome", "welcome: send email.marketing welcome_email\nwait 2d\nif opened(welcome) { … }"),
        StepNotDominating => ("The condition names a send that does not run on every path leading to it (it sits in another branch, or after the condition). On paths that skip it the predicate is always false.",
            "if plan == pro { hello: send … }\nif opened(hello) { … }", "hello: send …\nif opened(hello) { … }"),
        StepNotBefore => ("The condition names a send that no path to it goes through: the send comes after the condition, or sits in another branch of the same `if` or `ab_test`. The predicate is always false there.",
            "if opened(later) { … }\nlater: send …", "later: send …\nwait 2d\nif opened(later) { … }"),
        EngagementTooEarly => ("Deliveries, opens and clicks are reported by the provider some time after a send. A check that follows the send with no `wait` between them runs a moment later, when almost nobody has engaged yet.",
            "hello: send …\nif opened(hello) { … }", "hello: send …\nwait 1d\nif opened(hello) { … }"),
        UnusedAllow => ("`// flowc: allow(CODE)` on the line before a step (or before a campaign, or among its settings) silences that warning there. One that silences nothing is stale, misspelled, or names an error, which cannot be silenced.",
            "// flowc: allow(step-not-dominating)\nhello: send …", "hello: send …\nwait 1d\n// flowc: allow(step-not-dominating)\nif opened(a) or opened(b) { … }"),
        DuplicateCampaign => ("A campaign's id is its key in the database. Two files of one workspace that declare the same id would replace each other at launch, so the second is an error.",
            "// welcome.flow\ncampaign welcome { … }\n// welcome_v2.flow\ncampaign welcome { … }", "// welcome_v2.flow\ncampaign welcome_v2 { … }"),
        ScheduleInPast => ("A scheduled campaign starts once, at its time in its zone. When that time has passed, `flowc check` warns and `flowc campaign launch` refuses it, so a copied campaign is not sent at once by mistake.",
            "trigger scheduled at 2020-11-27 09:00 \"Europe/Paris\"", "trigger scheduled at 2030-11-27 09:00 \"Europe/Paris\""),
        Unreachable => ("Steps after `end`, or after a branch where every arm ends, never run.",
            "end\nsend email.marketing bye", "send email.marketing bye\nend"),
        MissingTrigger => ("Every campaign starts from exactly one trigger: scheduled, event, manual or api.",
            "campaign c { send … }", "campaign c {\n  trigger manual\n  send …\n}"),
        NoSend => ("A campaign that sends nothing is probably unfinished.", "campaign c { trigger manual  tag add \"x\" }", "campaign c { trigger manual  send email.marketing hello }"),
        InvalidTemplate => ("A template needs `channel` and `message`, a known `status` (draft, published, rejected), and sets each field once.",
            "template t { channel email }", "template t { channel email message marketing status published version 1 }"),
        InvalidDeclaration => ("A declaration breaks a rule of its own kind: an unknown field type, a price that is not in EUR, an empty tag, or a segment that contains itself.",
            "contact { plan: text }", "contact { plan: string }"),
        ImportError => ("An import names a file that cannot be read, a path outside the workspace (symlinks resolved), or closes a cycle of imports.",
            "import \"/etc/templates.flow\"", "import \"shared/templates.flow\""),
        MissingTimeout => ("A `wait until` holds a contact until an arm holds; its `timeout D` says how long at most, so no execution waits forever. It is required, even when its block is empty.",
            "wait until {\n  when event order.completed { }\n}", "wait until {\n  when event order.completed { }\n  timeout 3d { }\n}"),
        InvalidGoal => ("A campaign has at most one `goal`, and its window (`within D`) is longer than zero and at most 90 days: conversions are counted from entering the campaign.",
            "goal event order.completed within 120d", "goal event order.completed within 7d"),
        UnreachableArm => ("The arms of a `wait until` are tried in order and the first that holds wins, so an arm after one that always holds (such as `when true`) is never taken.",
            "wait until {\n  when true { }\n  when event order.completed { }\n  timeout 1d { }\n}", "wait until {\n  when event order.completed { }\n  timeout 1d { }\n}"),
        DuplicateSetting => ("`name`, `trigger`, `audience` and `on ineligible` are each set at most once per campaign.",
            "trigger manual\ntrigger api", "trigger api"),
        UnknownFunction => ("The predicates are consent(CHANNEL), capable(CHANNEL), opened(STEP), clicked(STEP), delivered(STEP) and in_segment(SEGMENT).",
            "if opend(hello) { … }", "if opened(hello) { … }"),
        OutOfRange => ("A constant, or arithmetic on constants, goes beyond what flowc represents: numbers are 64-bit floating point (about ±1.8e308), dates and datetimes lie in the years 0000 to 9999, a duration spans at most that whole calendar, a weight is at most 100% and a price at most 1000 EUR.",
            "audience lifetime_value > 99999…(400 digits)\nwait 99999999999999999999w", "audience lifetime_value > 1000000\nwait 52w"),
    }
}

/// The full text printed by `flowc explain`.
pub fn render(code: Code) -> String {
    let (story, wrong, right) = explain(code);
    let indent = |s: &str| s.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n");
    format!(
        "{code} ({}): {}\n\n{story}\n\nWrong:\n\n{}\n\nRight:\n\n{}\n",
        code.default_severity().as_str(),
        code.summary(),
        indent(wrong),
        indent(right)
    )
}
