package protocol

import (
	"fmt"

	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/universalmessage"
)

// Fault is a protocol-layer error the vehicle reports in
// RoutableMessage.signedMessageStatus.
type Fault = universalmessage.MessageFault_E

// PairingHint tells the owner how to pair the application key; it follows
// the words of an unknown or inactive key.
const PairingHint = "pair it by opening https://tesla.com/_ak/<your domain> on the phone with the Tesla app"

// Recovery says what a client should do about a fault.
type Recovery int

const (
	// GiveUp: retrying cannot help; report the fault.
	GiveUp Recovery = iota
	// RefreshSession: the session is out of sync (epoch, clock or counter).
	// Update it from the session info in the fault (or a new handshake) and
	// retry the command once.
	RefreshSession
	// Backoff: the vehicle is busy or slow; retry after a short, bounded
	// back-off.
	Backoff
)

var faultWords = map[Fault]string{
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_NONE:                                 "no fault",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_BUSY:                                 "the vehicle subsystem is busy",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_TIMEOUT:                              "the vehicle subsystem did not answer in time",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_UNKNOWN_KEY_ID:                       "the key is not paired with this car",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INACTIVE_KEY:                         "the key is paired with this car but has been disabled",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INVALID_SIGNATURE:                    "the command's signature did not verify",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INVALID_TOKEN_OR_COUNTER:             "the command's anti-replay counter was already used",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INSUFFICIENT_PRIVILEGES:              "the key's role or the car's state does not allow this command",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INVALID_DOMAINS:                      "the command went to a vehicle subsystem the car does not know (older firmware?)",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INVALID_COMMAND:                      "the car does not know this command (older firmware?)",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_DECODING:                             "the car could not decode the command",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INTERNAL:                             "internal vehicle error (often: the car is still booting)",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_WRONG_PERSONALIZATION:                "the command was addressed to a different VIN",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_BAD_PARAMETER:                        "the command was malformed or used a deprecated parameter",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_KEYCHAIN_IS_FULL:                     "the car's keychain is full",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INCORRECT_EPOCH:                      "the car restarted its session (epoch changed)",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_IV_INCORRECT_LENGTH:                  "the command's nonce has the wrong length",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_TIME_EXPIRED:                         "the command expired before the car received it",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_NOT_PROVISIONED_WITH_IDENTITY:        "the car has no VIN provisioned and may need service",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_COULD_NOT_HASH_METADATA:              "internal vehicle error while hashing the command",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_TIME_TO_LIVE_TOO_LONG:                "the command's expiry was too far in the future",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_REMOTE_ACCESS_DISABLED:               "the owner has disabled mobile access in the car",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_REMOTE_SERVICE_ACCESS_DISABLED:       "remote service commands are not permitted on this car",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_COMMAND_REQUIRES_ACCOUNT_CREDENTIALS: "the command must be sent through the Fleet API",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_REQUEST_MTU_EXCEEDED:                 "the command is too large",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_RESPONSE_MTU_EXCEEDED:                "the car executed the request but its answer was too large",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_REPEATED_COUNTER:                     "the command's counter was repeated",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INVALID_KEY_HANDLE:                   "the key handle is not valid",
	universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_REQUIRES_RESPONSE_ENCRYPTION:         "the car requires an encrypted response",
}

// FaultText names a fault in words.
func FaultText(f Fault) string {
	if w, ok := faultWords[f]; ok {
		return w
	}
	return fmt.Sprintf("unknown vehicle fault %d", int32(f))
}

// FaultRecovery classifies a fault (protocol.md, "Recovering from
// synchronization errors", and the remediation notes of the faults):
// epoch, expiry, counter and signature faults refresh the session and retry
// once; busy, timeout and internal (booting) faults back off and retry;
// everything else is final.
func FaultRecovery(f Fault) Recovery {
	switch f {
	case universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INCORRECT_EPOCH,
		universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_TIME_EXPIRED,
		universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INVALID_TOKEN_OR_COUNTER,
		universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INVALID_SIGNATURE:
		return RefreshSession
	case universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_BUSY,
		universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_TIMEOUT,
		universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INTERNAL:
		return Backoff
	}
	return GiveUp
}

// FaultError is a vehicle's refusal at the protocol layer.
type FaultError struct {
	Domain Domain
	Fault  Fault
	// Response is the vehicle's message; when it carries session info, the
	// session can be updated from it (Session.Update) before a retry.
	Response *universalmessage.RoutableMessage
}

func (e *FaultError) Error() string {
	msg := fmt.Sprintf("%s refused the command: %s", DomainName(e.Domain), FaultText(e.Fault))
	switch e.Fault {
	case universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_UNKNOWN_KEY_ID,
		universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INACTIVE_KEY:
		msg += "; " + PairingHint
	}
	return msg
}

// Recovery classifies the fault; see FaultRecovery.
func (e *FaultError) Recovery() Recovery { return FaultRecovery(e.Fault) }

// DomainName names a domain in words.
func DomainName(d Domain) string {
	switch d {
	case DomainVehicleSecurity:
		return "the car's security controller"
	case DomainInfotainment:
		return "the car's infotainment computer"
	}
	return fmt.Sprintf("vehicle domain %d", int32(d))
}
