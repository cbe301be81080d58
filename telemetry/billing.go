package telemetry

// Tesla's price for streaming, as it bills fleet telemetry since 2025. The
// setup page's estimate of a selection and the measured estimate of each
// car's bill (internal/streamcost) both use it.
const (
	// SignalsPerDollar is how many streamed signals cost US$1.
	SignalsPerDollar = 150_000
	// MonthlyCreditDollars is Tesla's monthly credit per account, in US$.
	MonthlyCreditDollars = 10.0
	// BillingMonthDays is the length of the month of estimates, in days.
	BillingMonthDays = 30
)
