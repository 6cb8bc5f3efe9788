//! webq-reports: HTML reports (tera) of webq results.
