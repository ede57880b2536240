// VMware Tools as vCenter reports them. vcsim 0.24.2 leaves a VM's guest information as it was made
// (tools not running, no heartbeat, no IP) whatever its power state; a client waiting for a booted
// guest, as a restore test does, would wait forever.
//
// guestAgent is a Registry handler (see changeVersions): it sees runtime.powerState change.
//
//   - Powered on: guest.toolsRunningStatus "guestToolsNotRunning", guestHeartbeatStatus "gray" (the
//     guest boots); after a delay (1 s by default) "guestToolsRunning", guest.toolsStatus "toolsOk",
//     guest.guestState "running", guestHeartbeatStatus "green", and an IP address unique to the VM
//     (10.x.y.z, from its moref) as guest.ipAddress and on its first NIC in guest.net (a VM without
//     NIC has no address). summary.guest and summary.quickStats follow.
//   - Powered off or suspended: back to tools not running ("toolsNotRunning"), guest state
//     "notRunning", heartbeat gray, no address. A VM removed from the inventory is forgotten.
//   - Per VM, read from config.extraConfig at power-on (set at CreateVM/ReconfigVM, or as a .vmx
//     line for a VM registered from its .vmx, see registerFromVMX): "vcsim.guest.tools" = "never"
//     (tools never start: the heartbeat stays gray) or the delay in seconds ("0.2", "30");
//     "vcsim.guest.ip" = "none" (tools run, no address is reported).
//
// Every change goes through simulator.Map.Update, so property collectors (WaitForUpdatesEx) see it.
package main

import (
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	guestToolsKey      = "vcsim.guest.tools"
	guestIPKey         = "vcsim.guest.ip"
	defaultToolsDelay  = time.Second
	toolsRunning       = string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)
	toolsNotRunning    = string(types.VirtualMachineToolsRunningStatusGuestToolsNotRunning)
	guestStateRunning  = "running"
	guestStateStopped  = "notRunning"
	heartbeatGreen     = types.ManagedEntityStatusGreen
	heartbeatGray      = types.ManagedEntityStatusGray
	guestAgentType     = "GuestAgent"
	guestAgentInstance = "guestAgent"
)

type guestAgent struct {
	mu  sync.Mutex
	gen map[types.ManagedObjectReference]int // bumped by each power change: a pending start is stale
}

func newGuestAgent() *guestAgent {
	return &guestAgent{gen: map[types.ManagedObjectReference]int{}}
}

func (g *guestAgent) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: guestAgentType, Value: guestAgentInstance}
}

// PutObject: a new VM has no heartbeat yet (vcsim sets only summary.quickStats's).
func (g *guestAgent) PutObject(o mo.Reference) {
	if vm, ok := o.(*simulator.VirtualMachine); ok {
		vm.GuestHeartbeatStatus = heartbeatGray
	}
}

func (g *guestAgent) RemoveObject(ref types.ManagedObjectReference) {
	g.mu.Lock()
	delete(g.gen, ref)
	g.mu.Unlock()
}

// UpdateObject runs where the change was made: for a power task, under the VM's lock.
func (g *guestAgent) UpdateObject(o mo.Reference, changes []types.PropertyChange) {
	if o.Reference().Type != "VirtualMachine" {
		return
	}
	var state types.VirtualMachinePowerState
	for _, change := range changes {
		if change.Name == "runtime.powerState" {
			state = types.VirtualMachinePowerState(fmt.Sprint(change.Val))
		}
	}
	if state == "" {
		return
	}
	vm, ok := simulator.Map.Get(o.Reference()).(*simulator.VirtualMachine)
	if !ok {
		return
	}
	gen := g.bump(vm.Self)
	stopGuest(vm) // off, suspended, or booting
	if state != types.VirtualMachinePowerStatePoweredOn {
		return
	}
	delay, starts := toolsDelay(vm)
	if !starts {
		return
	}
	time.AfterFunc(delay, func() { g.start(vm.Self, gen) })
}

func (g *guestAgent) bump(ref types.ManagedObjectReference) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gen[ref]++
	return g.gen[ref]
}

func (g *guestAgent) current(ref types.ManagedObjectReference, gen int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.gen[ref] == gen
}

// start reports the tools running, unless the VM was powered off (or on again) meanwhile.
func (g *guestAgent) start(ref types.ManagedObjectReference, gen int) {
	vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		return
	}
	simulator.Map.WithLock(vm, func() {
		if !g.current(ref, gen) || vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
			return
		}
		ip := ""
		if setting(vm, guestIPKey) != "none" && len(vm.Guest.Net) > 0 {
			ip = guestIP(ref)
		}
		setGuest(vm, toolsRunning, types.VirtualMachineToolsStatusToolsOk, guestStateRunning, heartbeatGreen, ip)
	})
}

// stopGuest reports the tools not running, no heartbeat and no address.
func stopGuest(vm *simulator.VirtualMachine) {
	if vm.Guest == nil {
		return
	}
	if vm.Guest.ToolsRunningStatus == toolsNotRunning && vm.GuestHeartbeatStatus == heartbeatGray && vm.Guest.IpAddress == "" {
		return // nothing to tell (a VM powered on for the first time)
	}
	setGuest(vm, toolsNotRunning, types.VirtualMachineToolsStatusToolsNotRunning, guestStateStopped, heartbeatGray, "")
}

// setGuest sets the fields (Map.Update does not set nested ones) and tells property collectors,
// one change per property path as vCenter reports them.
func setGuest(vm *simulator.VirtualMachine, running string, status types.VirtualMachineToolsStatus, state string, heartbeat types.ManagedEntityStatus, ip string) {
	vm.Guest.ToolsRunningStatus, vm.Guest.ToolsStatus, vm.Guest.GuestState = running, status, state
	vm.Guest.IpAddress = ip
	for i := range vm.Guest.Net {
		vm.Guest.Net[i].IpAddress = nil
		vm.Guest.Net[i].IpConfig = nil
	}
	if ip != "" {
		vm.Guest.Net[0].IpAddress = []string{ip}
	}
	vm.GuestHeartbeatStatus = heartbeat
	vm.Summary.QuickStats.GuestHeartbeatStatus = heartbeat
	if vm.Summary.Guest == nil {
		vm.Summary.Guest = &types.VirtualMachineGuestSummary{}
	}
	vm.Summary.Guest.ToolsRunningStatus, vm.Summary.Guest.ToolsStatus, vm.Summary.Guest.IpAddress = running, status, ip
	simulator.Map.Update(vm, []types.PropertyChange{
		{Name: "guest.toolsRunningStatus", Val: running},
		{Name: "guest.toolsStatus", Val: status},
		{Name: "guest.guestState", Val: state},
		{Name: "guest.ipAddress", Val: ip},
		{Name: "guest.net", Val: vm.Guest.Net},
		{Name: "guestHeartbeatStatus", Val: heartbeat},
		{Name: "summary.guest.toolsRunningStatus", Val: running},
		{Name: "summary.guest.toolsStatus", Val: status},
		{Name: "summary.guest.ipAddress", Val: ip},
		{Name: "summary.quickStats.guestHeartbeatStatus", Val: heartbeat},
	})
}

// toolsDelay is how long the VM's tools take to start; false when they never do.
func toolsDelay(vm *simulator.VirtualMachine) (time.Duration, bool) {
	value := setting(vm, guestToolsKey)
	if strings.EqualFold(value, "never") {
		return 0, false
	}
	if seconds, err := strconv.ParseFloat(value, 64); err == nil && seconds >= 0 {
		return time.Duration(seconds * float64(time.Second)), true
	}
	return defaultToolsDelay, true
}

// setting is the VM's extraConfig value for key ("" when unset); the last one wins, as vcsim appends.
func setting(vm *simulator.VirtualMachine, key string) string {
	value := ""
	if vm.Config == nil {
		return value
	}
	for _, option := range vm.Config.ExtraConfig {
		if o := option.GetOptionValue(); strings.EqualFold(o.Key, key) {
			value = strings.TrimSpace(fmt.Sprint(o.Value))
		}
	}
	return value
}

var morefNumber = regexp.MustCompile(`(\d+)$`)

// guestIP is the VM's address: 10.x.y.z from its moref's number (z in 2..251), distinct per VM.
func guestIP(ref types.ManagedObjectReference) string {
	var n uint32
	if m := morefNumber.FindString(ref.Value); m != "" {
		v, _ := strconv.ParseUint(m, 10, 32)
		n = uint32(v)
	} else {
		h := fnv.New32a()
		_, _ = h.Write([]byte(ref.Value))
		n = h.Sum32()
	}
	return fmt.Sprintf("10.%d.%d.%d", (n/250/256)%256, (n/250)%256, n%250+2)
}

// ---- .vmx settings as extraConfig ----

// vmxStructured are .vmx keys (lowered) vCenter turns into configuration fields, not extraConfig;
// vmxDevice matches device keys (disks, controllers, NICs, ...). vcsim's own "SET." and "RUN." keys
// (guest properties, containers) are never taken from a .vmx.
var (
	vmxStructured = map[string]bool{
		".encoding": true, "config.version": true, "virtualhw.version": true, "displayname": true,
		"guestos": true, "numvcpus": true, "memsize": true, "cpuid.corespersocket": true, "firmware": true,
		"vc.uuid": true, "uuid.bios": true, "uuid.location": true, "annotation": true, "ip0": true,
	}
	vmxDevice  = regexp.MustCompile(`(?i)^(scsi|sata|nvme|ide|ethernet|floppy|serial|parallel|usb|sound)\d`)
	vmxVcsimOp = regexp.MustCompile(`(?i)^(SET|RUN)\.`)
)

// vmxExtraConfig returns the .vmx's other settings ("key = value" lines, case kept) as extraConfig.
func vmxExtraConfig(data []byte) []types.BaseOptionValue {
	var out []types.BaseOptionValue
	unescape := strings.NewReplacer("|22", `"`, "|7C", "|", "|7c", "|")
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		i := strings.IndexByte(line, '=')
		if line == "" || strings.HasPrefix(line, "#") || i < 0 {
			continue
		}
		key := strings.TrimSpace(line[:i])
		if key == "" || vmxStructured[strings.ToLower(key)] || vmxDevice.MatchString(key) || vmxVcsimOp.MatchString(key) {
			continue
		}
		value := strings.TrimSpace(line[i+1:])
		value = unescape.Replace(strings.TrimSuffix(strings.TrimPrefix(value, `"`), `"`))
		out = append(out, &types.OptionValue{Key: key, Value: value})
	}
	return out
}
