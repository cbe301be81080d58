package hatest

// Device is a device registry entry (config/device_registry/list).
type Device struct {
	ID           string      `json:"id"`
	Name         string      `json:"name"`
	Manufacturer string      `json:"manufacturer"`
	Model        string      `json:"model"`
	SWVersion    string      `json:"sw_version"`
	SerialNumber string      `json:"serial_number"`
	Identifiers  [][2]string `json:"identifiers"`
}

// Entity is an entity registry entry with the details
// config/entity_registry/get_entries gives.
type Entity struct {
	EntityID            string         `json:"entity_id"`
	UniqueID            string         `json:"unique_id"`
	Platform            string         `json:"platform"`
	DeviceID            string         `json:"device_id"`
	DisabledBy          *string        `json:"disabled_by"`
	EntityCategory      *string        `json:"entity_category"`
	HasEntityName       bool           `json:"has_entity_name"`
	OriginalName        *string        `json:"original_name"`
	OriginalDeviceClass *string        `json:"original_device_class"`
	OriginalIcon        *string        `json:"original_icon"`
	Capabilities        map[string]any `json:"capabilities"`
	Options             map[string]any `json:"options"`
}

// Devices lists the device registry.
func (ws *WS) Devices() ([]Device, error) {
	var out []Device
	err := ws.Call(map[string]any{"type": "config/device_registry/list"}, &out)
	return out, err
}

// Entities lists the entity registry entries of a device, with details.
func (ws *WS) Entities(deviceID string) ([]Entity, error) {
	var list []Entity
	if err := ws.Call(map[string]any{"type": "config/entity_registry/list"}, &list); err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range list {
		if e.DeviceID == deviceID {
			ids = append(ids, e.EntityID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	var details map[string]*Entity
	if err := ws.Call(map[string]any{"type": "config/entity_registry/get_entries", "entity_ids": ids}, &details); err != nil {
		return nil, err
	}
	out := make([]Entity, 0, len(ids))
	for _, id := range ids {
		if e := details[id]; e != nil {
			out = append(out, *e)
		}
	}
	return out, nil
}
