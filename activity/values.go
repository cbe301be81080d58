package activity

import (
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// viewFields are the signals whose latest value a Tracker keeps: the ones
// its rules read and the ones the TeslaMate layout publishes. Everything
// else passes by untouched.
var viewFields = [...]telemetry.Field{
	// the rules
	telemetry.FieldGear,
	telemetry.FieldVehicleSpeed,
	telemetry.FieldOdometer,
	telemetry.FieldLocation,
	telemetry.FieldDetailedChargeState,
	telemetry.FieldACChargingEnergyIn,
	telemetry.FieldDCChargingEnergyIn,
	telemetry.FieldACChargingPower,
	telemetry.FieldDCChargingPower,
	telemetry.FieldFastChargerPresent,
	telemetry.FieldEnergyRemaining,
	telemetry.FieldSoc,
	telemetry.FieldBatteryLevel,
	telemetry.FieldSoftwareUpdateInstallationPercentComplete,
	// the TeslaMate layout
	telemetry.FieldVehicleName,
	telemetry.FieldVersion,
	telemetry.FieldSoftwareUpdateVersion,
	telemetry.FieldSoftwareUpdateDownloadPercentComplete,
	telemetry.FieldCarType,
	telemetry.FieldTrim,
	telemetry.FieldExteriorColor,
	telemetry.FieldWheelType,
	telemetry.FieldPackVoltage,
	telemetry.FieldPackCurrent,
	telemetry.FieldGpsHeading,
	telemetry.FieldLocked,
	telemetry.FieldSentryMode,
	telemetry.FieldFdWindow,
	telemetry.FieldFpWindow,
	telemetry.FieldRdWindow,
	telemetry.FieldRpWindow,
	telemetry.FieldDoorState,
	telemetry.FieldDriverSeatOccupied,
	telemetry.FieldHvacPower,
	telemetry.FieldClimateKeeperMode,
	telemetry.FieldInsideTemp,
	telemetry.FieldOutsideTemp,
	telemetry.FieldPreconditioningEnabled,
	telemetry.FieldEstBatteryRange,
	telemetry.FieldRatedRange,
	telemetry.FieldIdealBatteryRange,
	telemetry.FieldChargeLimitSoc,
	telemetry.FieldChargePortDoorOpen,
	telemetry.FieldChargeAmps,
	telemetry.FieldChargerPhases,
	telemetry.FieldChargerVoltage,
	telemetry.FieldChargeCurrentRequest,
	telemetry.FieldChargeCurrentRequestMax,
	telemetry.FieldScheduledChargingStartTime,
	telemetry.FieldTimeToFullCharge,
	telemetry.FieldTpmsPressureFl,
	telemetry.FieldTpmsPressureFr,
	telemetry.FieldTpmsPressureRl,
	telemetry.FieldTpmsPressureRr,
	telemetry.FieldTpmsSoftWarnings,
	telemetry.FieldDestinationName,
	telemetry.FieldDestinationLocation,
	telemetry.FieldMilesToArrival,
	telemetry.FieldMinutesToArrival,
	telemetry.FieldExpectedEnergyPercentAtTripArrival,
	telemetry.FieldRouteTrafficMinutesDelay,
	telemetry.FieldCenterDisplay,
	telemetry.FieldServiceMode,
}

// Indexes into viewFields of the signals the rules read.
const (
	vGear = iota
	vSpeed
	vOdometer
	vLocation
	vChargeState
	vACEnergyIn
	vDCEnergyIn
	vACPower
	vDCPower
	vFastCharger
	vEnergyRemaining
	vSoc
	vBatteryLevel
	vInstallPercent

	// ruleFields is how many of viewFields the rules read: the first.
	ruleFields
)

// slotOf maps a field number to 1 + its index in viewFields (0: not kept).
// It is built once and only read.
var slotOf = func() []uint8 {
	n := 0
	for _, f := range viewFields {
		n = max(n, int(f)+1)
	}
	s := make([]uint8, n)
	for i, f := range viewFields {
		s[f] = uint8(i + 1)
	}
	return s
}()

// slot returns the index of f in viewFields.
func slot(f telemetry.Field) (int, bool) {
	if f < 0 || int(f) >= len(slotOf) || slotOf[f] == 0 {
		return 0, false
	}
	return int(slotOf[f]) - 1, true
}

// Values holds the latest value of each signal a Tracker keeps.
type Values struct {
	v [len(viewFields)]telemetry.Value
}

// Get returns the latest value of f; a signal the car has not sent, or one
// the tracker does not keep, returns the zero Value (Valid false).
func (vs *Values) Get(f telemetry.Field) telemetry.Value {
	if i, ok := slot(f); ok {
		return vs.v[i]
	}
	return telemetry.Value{}
}

// Kept reports whether a Tracker that keeps every value (see
// Tracker.KeepEveryValue) keeps the latest value of f.
func Kept(f telemetry.Field) bool {
	_, ok := slot(f)
	return ok
}

// num returns slot i as a number, and whether it holds one.
func (vs *Values) num(i int) (float64, bool) {
	v := vs.v[i]
	switch v.Kind() {
	case telemetry.KindFloatValue, telemetry.KindIntValue:
		return v.Float(), true
	}
	return 0, false
}

// enum returns slot i's enum number, or -1.
func (vs *Values) enum(i int) int32 {
	if v := vs.v[i]; v.Kind() == telemetry.KindEnumValue {
		return v.EnumNumber()
	}
	return -1
}

// needsDetach reports whether v may refer to the record's memory: a
// string, or a value parsed from text.
func needsDetach(v *telemetry.Value) bool {
	if v.Kind() == telemetry.KindStringValue {
		return true
	}
	_, raw := v.Raw()
	return raw && v.Kind() != telemetry.KindEnumValue
}
