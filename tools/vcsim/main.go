// Command vcsim runs govmomi's vCenter simulator (0.24.2, Debian golang-github-vmware-govmomi-dev)
// with an inventory described by a JSON spec, for the dashboard's tests and demos.
//
// It builds the inventory, writes a manifest (VM morefs, disk files, datastore directories), prints
// one JSON "ready" line on stdout and serves plain HTTP (or HTTPS with -tls) until SIGINT/SIGTERM.
//
// The ready line: {"host", "port", "username", "password", "url", "protocol": "http"|"https",
// "thumbprint": "AA:BB:..." (SHA-256 of the certificate, with -tls), "cert_file"}.
//
// Spec (JSON):
//
//	{"instance_uuid": "...",              // optional: about.instanceUuid (default: vcsim's fixed one)
//	 "datacenters": [{"name": "DC", "clusters": [{"name": "C", "hosts": 2}],
//	   "hosts": [{"name": "DC0_H0"}],     // optional standalone hosts (AddStandaloneHost_Task)
//	   "switches": [{"name": "DSwitch", "portgroups": ["DPG-1"]}],  // optional distributed switches,
//	                                      // every host a member, with these port groups
//	   "datastores": [{"name": "ds1"}],   // VMs go on the first one, on the first cluster's hosts
//	   "folders": [{"path": "A/B",        // below the datacenter's VM folder; "" is the root
//	     "vms": [{"name": "web-01", "guest_id": "...", "cpus": 2, "memory_mb": 4096, "power_on": true,
//	              "disks_mb": [64, 16], "instance_uuid": "...", "bios_uuid": "...",
//	              "nics": ["VM Network"], "cdrom": true, "annotation": "...", "firmware": "efi",
//	              "extra_config": {"disk.EnableUUID": "TRUE"}}],
//	     "generate": {"count": 100, "name_prefix": "vm-", "disks_mb": [1], ...}}]}],
//	 "cbt_max_areas": 2000}                // optional: changed areas per QueryChangedDiskAreas answer
//
// Beyond vcsim 0.24.2 (see registerOverrides): RetrievePropertiesEx pages by maxObjects with
// ContinueRetrievePropertiesEx, config.changeVersion is kept up to date as vCenter does, and a
// collector made by CreatePropertyCollector answers WaitForUpdatesEx at the cost of what changed,
// not of the whole inventory (watch.go: 0.1 s instead of 6-7 s at 50,000 VMs).
// More users (-extra-user NAME:PASSWORD), and privileges answered from the permissions set, as
// vCenter does (privileges.go); the -username user is Admin on the root folder. vCenter's REST API
// (/rest: cis/session, tagging category, tag, tag-association) is vcsim's vapi/simulator, signing in
// only these users with their passwords (HTTP basic authentication), as vCenter does. VMware Tools status,
// heartbeat and IP address appear after power-on, as vCenter reports them (guest.go; extraConfig
// "vcsim.guest.tools" = "never" or seconds, "vcsim.guest.ip" = "none").
//
// Extensions for backups (see interceptor and changeTracker):
//
//   - Disk files as vSphere lays them out. vcsim creates "<disk>.vmdk" and "<disk>-flat.vmdk"
//     empty; once a VM is created or reconfigured, an empty descriptor gets a monolithic flat VMFS
//     text and the flat file the disk's full capacity (sparse: reads as zeros, uses no space).
//   - Changed block tracking. While a VM has config.changeTrackingEnabled (ReconfigVM_Task), each of
//     its disks' "<disk>-flat.vmdk" has a change record: bytes written to it through the datastore
//     HTTP API (PUT /folder/...) mark 64 KiB blocks as changed. Writes made to the files directly
//     are not seen. Taking a snapshot stamps each tracked disk of the snapshot's
//     config.hardware.device with backing.changeId "<16 hex pairs, dash after 8>/<N>", N counting
//     snapshots since tracking started. QueryChangedDiskAreas(snapshot, deviceKey, startOffset,
//     changeId) returns the areas written between the snapshot that got changeId and the given one
//     (or now, without a snapshot), 64 KiB aligned and merged into runs; changeId "*" returns the
//     non-zero 64 KiB blocks of the flat file as it is now (vcsim does not freeze disks under a
//     snapshot). An answer covers [startOffset, startOffset+length) with at most cbt_max_areas
//     areas, so clients must loop as with vCenter. Faults as vSphere's: FileFault when tracking is
//     off, was switched off and on again (a new epoch: older ids are stale), or the snapshot was
//     taken without it; InvalidArgument (invalidProperty "changeId") for a malformed id or one
//     newer than the snapshot, ("deviceKey", "startOffset", "snapshot") for wrong arguments.
//   - Failing quiesce. CreateSnapshot_Task with quiesce=true on a VM whose name or annotation
//     contains "quiesce-fails" returns a task that fails with ApplicationQuiesceFault and vSphere's
//     message; without quiesce it succeeds.
//   - Partial PUT. PUT /folder/... with "Content-Range: bytes START-END/TOTAL" (TOTAL may be "*")
//     writes only those bytes of an existing (or new) file, without truncating it; vCenter has no
//     such thing, it is for tests that change a few MiB of a disk. A PUT without it replaces the
//     file, as vcsim does, and all of it counts as written.
//
// Build (GOPATH mode, offline):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$PWD/.cache/gocache go build -o .cache/bin/vcsim ./tools/vcsim
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator" // registers vCenter's REST API (/rest: sessions, tagging)
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// ---- spec ----

type spec struct {
	InstanceUUID string   `json:"instance_uuid"` // about.instanceUuid of this "vCenter"
	Datacenters  []dcSpec `json:"datacenters"`
	CBTMaxAreas  int      `json:"cbt_max_areas"` // changed areas per QueryChangedDiskAreas answer (default 2000)
}

type dcSpec struct {
	Name     string        `json:"name"`
	Clusters []clusterSpec `json:"clusters"`
	Hosts    []struct {
		Name string `json:"name"`
	} `json:"hosts"` // standalone hosts, each in its own compute resource with a root pool
	Switches   []switchSpec `json:"switches"`
	Datastores []struct {
		Name string `json:"name"`
	} `json:"datastores"`
	Folders []folderSpec `json:"folders"`
}

type switchSpec struct {
	Name       string   `json:"name"`
	Portgroups []string `json:"portgroups"`
}

type clusterSpec struct {
	Name  string `json:"name"`
	Hosts int    `json:"hosts"`
}

type folderSpec struct {
	Path     string        `json:"path"`
	VMs      []vmSpec      `json:"vms"`
	Generate *generateSpec `json:"generate"`
}

type vmSpec struct {
	Name     string  `json:"name"`
	GuestID  string  `json:"guest_id"`
	CPUs     int32   `json:"cpus"`
	MemoryMB int64   `json:"memory_mb"`
	PowerOn  bool    `json:"power_on"`
	DisksMB  []int64 `json:"disks_mb"`
	// Optional fixed identity, so a demo inventory keeps its VMs' identity across restarts.
	InstanceUUID string `json:"instance_uuid"`
	BiosUUID     string `json:"bios_uuid"`
	// Optional extras: a vmxnet3 NIC per network name (vcsim has "VM Network" in each datacenter),
	// an IDE CD-ROM (client device), the annotation, "bios" or "efi", and extraConfig settings.
	NICs        []string          `json:"nics"`
	CDROM       bool              `json:"cdrom"`
	Annotation  string            `json:"annotation"`
	Firmware    string            `json:"firmware"`
	ExtraConfig map[string]string `json:"extra_config"`
}

// generateSpec creates Count VMs named NamePrefix0001..; the embedded vmSpec fields are shared.
type generateSpec struct {
	vmSpec
	Count      int    `json:"count"`
	NamePrefix string `json:"name_prefix"`
}

// ---- manifest ----

type manifest struct {
	URL         string       `json:"url"`
	Datacenters []dcManifest `json:"datacenters"`
	VMs         []vmManifest `json:"vms"`
}

type dcManifest struct {
	Name       string       `json:"name"`
	Moref      string       `json:"moref"`
	Datastores []dsManifest `json:"datastores"`
}

type dsManifest struct {
	Name  string `json:"name"`
	Moref string `json:"moref"`
	Path  string `json:"path"` // local directory backing the datastore
}

type vmManifest struct {
	Datacenter    string         `json:"datacenter"`
	Folder        string         `json:"folder"`
	Name          string         `json:"name"`           // as given in the spec
	InventoryName string         `json:"inventory_name"` // as vCenter stores it (escaped)
	InstanceUUID  string         `json:"instance_uuid"`
	Moref         string         `json:"moref"`
	PowerState    string         `json:"power_state"`
	Host          string         `json:"host"`
	Disks         []diskManifest `json:"disks"`
}

type diskManifest struct {
	Key            int32  `json:"key"`
	Label          string `json:"label"`
	CapacityBytes  int64  `json:"capacity_bytes"`
	Datastore      string `json:"datastore"`
	FileName       string `json:"file_name"`       // "[datastore1] web-01/web-01.vmdk"
	DescriptorPath string `json:"descriptor_path"` // "web-01/web-01.vmdk", relative to the datastore
	FlatPath       string `json:"flat_path"`       // "web-01/web-01-flat.vmdk"
}

// ---- inventory ----

// builder talks to the simulator through the in-process vim25 client (simulator.Service is a
// soap.RoundTripper): vcsim's own CreateVM/ReconfigVM logic creates files, layouts and events,
// without XML or HTTP per call.
type builder struct {
	ctx     context.Context
	c       *vim25.Client
	dsRoot  string
	dirs    []string // datastore directories to remove on exit
	out     manifest
	folders map[string]*object.Folder
}

// stores maps datacenter (escaped name, as dcPath) and datastore names to local directories.
func (b *builder) stores() map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, dc := range b.out.Datacenters {
		out[escapeName(dc.Name)] = map[string]string{}
		for _, ds := range dc.Datastores {
			out[escapeName(dc.Name)][ds.Name] = filepath.Clean(ds.Path)
		}
	}
	return out
}

// escapeName mirrors vCenter: ManagedEntity.name stores '%', '/' and '\' as %25, %2f and %5c.
// It also keeps '/' out of the VM directory and file names vcsim derives from the name.
func escapeName(s string) string {
	return strings.NewReplacer("%", "%25", "/", "%2f", `\`, "%5c").Replace(s)
}

// wait returns a task's result. vcsim 0.24.2 runs tasks synchronously inside the call, so the
// task is already finished; reading it from the registry saves a PropertyCollector round trip
// per task, and dropping it keeps 10,000s of finished tasks out of memory.
func wait(task *object.Task, err error) (types.AnyType, error) {
	if err != nil {
		return nil, err
	}
	t := simulator.Map.Get(task.Reference()).(*simulator.Task)
	simulator.Map.Remove(task.Reference())
	if t.Info.Error != nil {
		return nil, fmt.Errorf("%s: %s", t.Info.Name, t.Info.Error.LocalizedMessage)
	}
	return t.Info.Result, nil
}

func (b *builder) datacenter(s dcSpec) error {
	dc, err := object.NewRootFolder(b.c).CreateDatacenter(b.ctx, escapeName(s.Name))
	if err != nil {
		return err
	}
	folders, err := dc.Folders(b.ctx)
	if err != nil {
		return err
	}
	p := &placer{b: b, dc: s.Name}
	hosts, err := b.clusters(folders.HostFolder, s.Clusters, p)
	if err != nil {
		return err
	}
	for _, h := range s.Hosts {
		spec := types.HostConnectSpec{HostName: escapeName(h.Name)}
		res, err := wait(folders.HostFolder.AddStandaloneHost(b.ctx, spec, true, nil, nil))
		if err != nil {
			return fmt.Errorf("host %q: %w", h.Name, err)
		}
		hosts = append(hosts, res.(types.ManagedObjectReference))
	}
	for _, sw := range s.Switches {
		if err := b.distributedSwitch(folders.NetworkFolder, sw, hosts); err != nil {
			return err
		}
	}
	out := dcManifest{Name: s.Name, Moref: dc.Reference().Value}
	for _, ds := range s.Datastores {
		m, err := b.datastore(ds.Name, hosts)
		if err != nil {
			return err
		}
		out.Datastores = append(out.Datastores, m)
	}
	b.out.Datacenters = append(b.out.Datacenters, out)
	if len(out.Datastores) > 0 {
		p.ds = out.Datastores[0].Name
	}

	b.folders = map[string]*object.Folder{"": folders.VmFolder}
	for _, f := range s.Folders {
		if err := p.folder(f); err != nil {
			return err
		}
	}
	return nil
}

// clusters creates the clusters and their hosts, returns all hosts and points p at the first
// cluster's root resource pool and hosts.
func (b *builder) clusters(hostFolder *object.Folder, specs []clusterSpec, p *placer) ([]types.ManagedObjectReference, error) {
	var hosts []types.ManagedObjectReference
	for i, cs := range specs {
		cluster, err := hostFolder.CreateCluster(b.ctx, escapeName(cs.Name), types.ClusterConfigSpecEx{})
		if err != nil {
			return nil, err
		}
		for n := 1; n <= cs.Hosts; n++ {
			spec := types.HostConnectSpec{HostName: fmt.Sprintf("esx%02d.%s.sim", n, strings.ToLower(escapeName(cs.Name)))}
			res, err := wait(cluster.AddHost(b.ctx, spec, true, nil, nil))
			if err != nil {
				return nil, err
			}
			hosts = append(hosts, res.(types.ManagedObjectReference))
		}
		if i == 0 {
			rp, err := cluster.ResourcePool(b.ctx)
			if err != nil {
				return nil, err
			}
			p.pool, p.hosts = rp.Reference(), hosts
		}
	}
	return hosts, nil
}

// distributedSwitch creates a distributed switch with every host as a member, then its port groups
// (vcsim adds each port group to its member hosts' and their compute resources' networks).
func (b *builder) distributedSwitch(networkFolder *object.Folder, s switchSpec, hosts []types.ManagedObjectReference) error {
	var create types.DVSCreateSpec
	create.ConfigSpec = &types.VMwareDVSConfigSpec{}
	create.ConfigSpec.GetDVSConfigSpec().Name = escapeName(s.Name)
	res, err := wait(networkFolder.CreateDVS(b.ctx, create))
	if err != nil {
		return fmt.Errorf("switch %q: %w", s.Name, err)
	}
	dvs := object.NewDistributedVirtualSwitch(b.c, res.(types.ManagedObjectReference))
	// vCenter marks the switch's uplink port group (config.uplink, vSphere 6.5 and later); vcsim
	// 0.24.2 creates it without the mark.
	for _, ref := range simulator.Map.Get(dvs.Reference()).(*simulator.DistributedVirtualSwitch).Portgroup {
		simulator.Map.Get(ref).(*simulator.DistributedVirtualPortgroup).Config.Uplink = types.NewBool(true)
	}
	members := &types.DVSConfigSpec{}
	for _, h := range hosts {
		members.Host = append(members.Host, types.DistributedVirtualSwitchHostMemberConfigSpec{
			Operation: string(types.ConfigSpecOperationAdd),
			Host:      h,
		})
	}
	if _, err := wait(dvs.Reconfigure(b.ctx, members)); err != nil {
		return fmt.Errorf("switch %q: %w", s.Name, err)
	}
	for _, name := range s.Portgroups {
		spec := []types.DVPortgroupConfigSpec{{Name: escapeName(name), Type: "earlyBinding", NumPorts: 8}}
		if _, err := wait(dvs.AddPortgroup(b.ctx, spec)); err != nil {
			return fmt.Errorf("port group %q: %w", name, err)
		}
	}
	return nil
}

// datastore creates a local datastore in a new temporary directory, mounted on every host: the
// same name and directory on each host yields one shared Datastore object, as in simulator.Model.
func (b *builder) datastore(name string, hosts []types.ManagedObjectReference) (dsManifest, error) {
	dir, err := os.MkdirTemp(b.dsRoot, "vcsim-ds-")
	if err != nil {
		return dsManifest{}, err
	}
	b.dirs = append(b.dirs, dir)
	var ref types.ManagedObjectReference
	for _, h := range hosts {
		dss, err := object.NewHostSystem(b.c, h).ConfigManager().DatastoreSystem(b.ctx)
		if err != nil {
			return dsManifest{}, err
		}
		created, err := dss.CreateLocalDatastore(b.ctx, name, dir)
		if err != nil {
			return dsManifest{}, err
		}
		ref = created.Reference()
	}
	return dsManifest{Name: name, Moref: ref.Value, Path: dir}, nil
}

// folder returns the VM folder for a "A/B/C" path below the datacenter's vm folder, creating
// missing levels.
func (b *builder) folder(p string) (*object.Folder, error) {
	p = strings.Trim(p, "/")
	if f, ok := b.folders[p]; ok {
		return f, nil
	}
	parentPath := path.Dir(p)
	if parentPath == "." {
		parentPath = ""
	}
	parent, err := b.folder(parentPath)
	if err != nil {
		return nil, err
	}
	f, err := parent.CreateFolder(b.ctx, escapeName(path.Base(p)))
	if err != nil {
		return nil, fmt.Errorf("folder %q: %w", p, err)
	}
	b.folders[p] = f
	return f, nil
}

// placer puts VMs on the first cluster's root pool, round-robin over its hosts, on one datastore.
type placer struct {
	b     *builder
	dc    string
	pool  types.ManagedObjectReference
	hosts []types.ManagedObjectReference
	ds    string
	next  int
}

// folder creates a spec folder's VMs, generated ones (NamePrefix0001, ...) after the listed ones.
func (p *placer) folder(f folderSpec) error {
	folder, err := p.b.folder(f.Path)
	if err != nil {
		return err
	}
	vms := append([]vmSpec(nil), f.VMs...)
	if g := f.Generate; g != nil {
		width := len(fmt.Sprint(g.Count))
		if width < 4 {
			width = 4
		}
		for n := 1; n <= g.Count; n++ {
			vm := g.vmSpec
			vm.Name = fmt.Sprintf("%s%0*d", g.NamePrefix, width, n)
			vms = append(vms, vm)
		}
	}
	for _, vm := range vms {
		if err := p.create(folder, f.Path, vm); err != nil {
			return err
		}
	}
	return nil
}

func (p *placer) create(folder *object.Folder, folderPath string, s vmSpec) error {
	if len(p.hosts) == 0 || p.ds == "" {
		return fmt.Errorf("datacenter %q: VMs need a cluster with hosts and a datastore", p.dc)
	}
	if s.GuestID == "" {
		s.GuestID = string(types.VirtualMachineGuestOsIdentifierOtherGuest64)
	}
	if s.CPUs == 0 {
		s.CPUs = 1
	}
	if s.MemoryMB == 0 {
		s.MemoryMB = 1024
	}
	host := p.hosts[p.next%len(p.hosts)]
	p.next++

	name := escapeName(s.Name)
	config := types.VirtualMachineConfigSpec{
		Name:     name,
		GuestId:  s.GuestID,
		NumCPUs:  s.CPUs,
		MemoryMB: s.MemoryMB,
		// Only the datastore: vcsim makes the directory "<name>" (or "<name> (N)" if taken).
		Files:        &types.VirtualMachineFileInfo{VmPathName: "[" + p.ds + "]"},
		DeviceChange: append(diskDevices(s.DisksMB), otherDevices(s)...),
		InstanceUuid: s.InstanceUUID,
		Uuid:         s.BiosUUID,
		Annotation:   s.Annotation,
		Firmware:     s.Firmware,
		ExtraConfig:  extraConfig(s.ExtraConfig),
	}
	res, err := wait(folder.CreateVM(p.b.ctx, config, object.NewResourcePool(p.b.c, p.pool), object.NewHostSystem(p.b.c, host)))
	if err != nil {
		return fmt.Errorf("VM %q: %w", s.Name, err)
	}
	ref := res.(types.ManagedObjectReference)
	if s.PowerOn {
		if _, err := wait(object.NewVirtualMachine(p.b.c, ref).PowerOn(p.b.ctx)); err != nil {
			return fmt.Errorf("VM %q: %w", s.Name, err)
		}
	}

	m := vmEntry(ref)
	m.Datacenter, m.Folder, m.Name = p.dc, strings.Trim(folderPath, "/"), s.Name
	p.b.out.VMs = append(p.b.out.VMs, m)
	return nil
}

// vmEntry reads a VM's manifest entry straight from the registry (nothing else runs while the
// inventory is built, and this avoids a PropertyCollector call per VM).
func vmEntry(ref types.ManagedObjectReference) vmManifest {
	vm := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	m := vmManifest{
		InventoryName: vm.Name, InstanceUUID: vm.Config.InstanceUuid, Moref: ref.Value,
		PowerState: string(vm.Runtime.PowerState), Host: vm.Runtime.Host.Value, Disks: []diskManifest{},
	}
	for _, d := range vm.Config.Hardware.Device {
		disk, ok := d.(*types.VirtualDisk)
		if !ok {
			continue
		}
		fileName := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo).GetVirtualDeviceFileBackingInfo().FileName
		var dp object.DatastorePath
		dp.FromString(fileName)
		m.Disks = append(m.Disks, diskManifest{
			Key: disk.Key, Label: disk.DeviceInfo.GetDescription().Label, CapacityBytes: disk.CapacityInBytes,
			Datastore: dp.Datastore, FileName: fileName, DescriptorPath: dp.Path,
			FlatPath: strings.TrimSuffix(dp.Path, ".vmdk") + "-flat.vmdk",
		})
	}
	return m
}

// diskDevices returns an LSI Logic SAS controller (key 1000) with one thin disk per size, keyed
// 2000.. as vSphere does. Files are named by vcsim: "<vm>/<vm>.vmdk", "<vm>/<vm>_1.vmdk", ...
func diskDevices(sizesMB []int64) []types.BaseVirtualDeviceConfigSpec {
	if len(sizesMB) == 0 {
		return nil
	}
	var devices object.VirtualDeviceList
	ctrl, _ := devices.CreateSCSIController("lsilogic-sas")
	ctrl.GetVirtualDevice().Key = 1000
	ctrl.GetVirtualDevice().DeviceInfo = &types.Description{Label: "SCSI controller 0", Summary: "LSI Logic SAS"}
	devices = append(devices, ctrl)
	for i, mb := range sizesMB {
		// The disk must be in the list before the next CreateDisk, which picks a free unit number.
		// No file name: vcsim picks one in the VM's directory (a bare "[ds]" would become "[ds].vmdk").
		disk := devices.CreateDisk(ctrl.(types.BaseVirtualController), types.ManagedObjectReference{}, "")
		disk.Key = int32(2000 + i)
		disk.CapacityInKB = mb * 1024
		disk.CapacityInBytes = mb * 1024 * 1024
		disk.DeviceInfo = &types.Description{Label: fmt.Sprintf("Hard disk %d", i+1)}
		devices = append(devices, disk)
	}
	specs, _ := devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
	return specs
}

func extraConfig(settings map[string]string) []types.BaseOptionValue {
	var out []types.BaseOptionValue
	for key, value := range settings {
		out = append(out, &types.OptionValue{Key: key, Value: value})
	}
	return out
}

// otherDevices returns the spec's NICs (vmxnet3, keys 4000..) and CD-ROM (IDE 0:0, key 3000).
func otherDevices(s vmSpec) []types.BaseVirtualDeviceConfigSpec {
	var devices object.VirtualDeviceList
	for i, network := range s.NICs {
		backing := &types.VirtualEthernetCardNetworkBackingInfo{
			VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: network},
		}
		nic, err := devices.CreateEthernetCard("vmxnet3", backing)
		if err != nil {
			continue
		}
		nic.GetVirtualDevice().Key = int32(4000 + i)
		devices = append(devices, nic)
	}
	if s.CDROM {
		unit := int32(0)
		devices = append(devices, &types.VirtualCdrom{VirtualDevice: types.VirtualDevice{
			Key:           3000,
			ControllerKey: 200, // vcsim's first IDE controller
			UnitNumber:    &unit,
			Backing: &types.VirtualCdromRemotePassthroughBackingInfo{
				VirtualDeviceRemoteDeviceBackingInfo: types.VirtualDeviceRemoteDeviceBackingInfo{},
			},
			Connectable: &types.VirtualDeviceConnectInfo{StartConnected: false, AllowGuestControl: true},
		}})
	}
	specs, _ := devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
	return specs
}

// registerOverrides replaces or adds SOAP methods that vcsim 0.24.2 lacks on objects other than
// VMs; VM methods (QueryChangedDiskAreas, and later ExportVm) go through the interceptor.
//
// Caution: the pattern of simulator/example_extend_test.go (simulator.Map.Put(&wrapper{obj}))
// breaks objects whose concrete type vcsim asserts: Map.Get(ref).(*simulator.VirtualMachine) in
// CreateSnapshot, RemoveSnapshot, Destroy, Clone, ... panics once a VM is wrapped. The
// PropertyCollector is safe to wrap (vcsim clones it per session by reflection). For VM methods,
// the interceptor (an HTTP handler around server.Config.Handler) sends the request to a vmExtension.
func registerOverrides(model *simulator.Model) {
	ref := model.ServiceContent.PropertyCollector
	simulator.Map.Put(&pagingCollector{PropertyCollector: simulator.PropertyCollector{
		PropertyCollector: mo.PropertyCollector{Self: ref},
	}})
}

// pagingCollector pages RetrievePropertiesEx results by options.maxObjects and implements
// ContinueRetrievePropertiesEx, as vCenter does; vcsim 0.24.2 returns everything at once and has
// no ContinueRetrievePropertiesEx, so a client's paging loop would go untested.
// vcsim makes one zero-valued copy per session (reflect.New), so state lives in lazily made fields.
type pagingCollector struct {
	simulator.PropertyCollector
	pageMu sync.Mutex
	pages  map[string]pendingPage
	tokens int
}

type pendingPage struct {
	rest []types.ObjectContent
	max  int
}

func (pc *pagingCollector) RetrievePropertiesEx(ctx *simulator.Context, r *types.RetrievePropertiesEx) soap.HasFault {
	res := pc.PropertyCollector.RetrievePropertiesEx(ctx, r)
	if body, ok := res.(*methods.RetrievePropertiesExBody); ok && body.Res != nil && body.Res.Returnval != nil {
		body.Res.Returnval = pc.page(body.Res.Returnval.Objects, int(r.Options.MaxObjects))
	}
	return res
}

func (pc *pagingCollector) ContinueRetrievePropertiesEx(r *types.ContinueRetrievePropertiesEx) soap.HasFault {
	body := new(methods.ContinueRetrievePropertiesExBody)
	pc.pageMu.Lock()
	p, ok := pc.pages[r.Token]
	delete(pc.pages, r.Token)
	pc.pageMu.Unlock()
	if !ok {
		body.Fault_ = simulator.Fault("unknown token", &types.InvalidArgument{InvalidProperty: "token"})
		return body
	}
	body.Res = &types.ContinueRetrievePropertiesExResponse{Returnval: *pc.page(p.rest, p.max)}
	return body
}

func (pc *pagingCollector) CancelRetrievePropertiesEx(r *types.CancelRetrievePropertiesEx) soap.HasFault {
	pc.pageMu.Lock()
	delete(pc.pages, r.Token)
	pc.pageMu.Unlock()
	return &methods.CancelRetrievePropertiesExBody{Res: new(types.CancelRetrievePropertiesExResponse)}
}

// page returns the first max objects and keeps the rest under a new token.
func (pc *pagingCollector) page(objects []types.ObjectContent, max int) *types.RetrieveResult {
	if max <= 0 || len(objects) <= max {
		return &types.RetrieveResult{Objects: objects}
	}
	pc.pageMu.Lock()
	defer pc.pageMu.Unlock()
	if pc.pages == nil {
		pc.pages = make(map[string]pendingPage)
	}
	pc.tokens++
	token := fmt.Sprintf("page-%d", pc.tokens)
	pc.pages[token] = pendingPage{rest: objects[max:], max: max}
	return &types.RetrieveResult{Token: token, Objects: objects[:max]}
}

// ---- config.changeVersion ----

// changeVersions keeps VirtualMachine config.changeVersion as vCenter does: set when a VM is created
// and renewed whenever its configuration (and so its disks) may have changed. vcsim 0.24.2 leaves it
// empty and reports no property change for ReconfigVM_Task at all, so a client watching
// config.changeVersion through WaitForUpdatesEx could not see disks being added or removed.
//
// It is a Registry handler (like a PropertyCollector with a pending WaitForUpdates): it sees every
// property change, tasks finishing included. A new VM is the result of its task (CreateVM, CloneVM,
// RegisterVM: vcsim puts the VM in the inventory before it has a config). Configuration tasks are
// recognised by their descriptionId; snapshot tasks name the snapshot, which may be gone when the
// task ends, so the VM is remembered when the task starts.
type changeVersions struct {
	mu      sync.Mutex
	pending map[types.ManagedObjectReference]types.ManagedObjectReference // task -> VM
	last    string
}

// Tasks after which a VM's configuration (devices, disk backings, snapshot files) may differ.
var configTasks = map[string]bool{
	"VirtualMachine.reconfigVm":               true,
	"VirtualMachine.createSnapshot":           true,
	"VirtualMachine.revertSnapshot":           true,
	"VirtualMachine.RemoveAllSnapshots":       true,
	"VirtualMachine.relocateVm":               true,
	"VirtualMachine.upgradeVm":                true,
	"VirtualMachineSnapshot.removeSnapshot":   true,
	"VirtualMachineSnapshot.revertToSnapshot": true,
}

func (c *changeVersions) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "ChangeVersionTracker", Value: "changeVersionTracker"}
}

func (c *changeVersions) PutObject(mo.Reference) {}

func (c *changeVersions) RemoveObject(types.ManagedObjectReference) {}

func (c *changeVersions) UpdateObject(o mo.Reference, changes []types.PropertyChange) {
	task, ok := o.(*mo.Task)
	if !ok || task.Info.Entity == nil {
		return
	}
	var state string
	var result types.AnyType
	for _, change := range changes {
		switch change.Name {
		case "info.state":
			state = fmt.Sprint(change.Val)
		case "info.result":
			result = change.Val
		}
	}
	switch state {
	case string(types.TaskInfoStateRunning):
		if vm, ok := vmOf(*task.Info.Entity); ok && configTasks[task.Info.DescriptionId] {
			c.mu.Lock()
			c.pending[task.Self] = vm
			c.mu.Unlock()
		}
	case string(types.TaskInfoStateSuccess), string(types.TaskInfoStateError):
		c.mu.Lock()
		vm, changed := c.pending[task.Self]
		delete(c.pending, task.Self)
		c.mu.Unlock()
		if changed {
			c.renew(vm, true)
		}
		if ref, ok := result.(types.ManagedObjectReference); ok && ref.Type == "VirtualMachine" {
			c.renew(ref, false) // a new VM
		}
	}
}

// renew gives a VM a new change version (always, or only if it has none yet) and tells property
// collectors about it.
func (c *changeVersions) renew(ref types.ManagedObjectReference, always bool) {
	vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok || vm.Config == nil || (!always && vm.Config.ChangeVersion != "") {
		return
	}
	v := c.next()
	vm.Config.ChangeVersion = v // Map.Update notifies property collectors (it may not set nested fields)
	simulator.Map.Update(vm, []types.PropertyChange{{Name: "config.changeVersion", Val: v}})
}

// vmOf returns the VM a task's entity is, or belongs to (a snapshot).
func vmOf(entity types.ManagedObjectReference) (types.ManagedObjectReference, bool) {
	switch obj := simulator.Map.Get(entity).(type) {
	case *simulator.VirtualMachine:
		return obj.Self, true
	case *simulator.VirtualMachineSnapshot:
		return obj.Vm, true
	}
	return types.ManagedObjectReference{}, false
}

// next returns a new change version: an RFC 3339 timestamp as vCenter uses, always increasing.
func (c *changeVersions) next() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := time.Now().UTC().Format("2006-01-02T15:04:05.000000000Z")
	if v <= c.last { // same nanosecond (coarse clocks): still a new value
		v = c.last + "1"
	}
	c.last = v
	return v
}

// ---- extensions: disk layout, changed block tracking, failing quiesce, partial PUTs ----
//
// These live in an HTTP handler in front of vcsim's own (see interceptor), plus a Registry handler
// (changeTracker) that sees tasks finish. VM methods cannot be added to *simulator.VirtualMachine
// (see registerOverrides), so a SOAP request for QueryChangedDiskAreas, or for a quiesced
// CreateSnapshot_Task of a VM meant to fail, has its _this rewritten to a hidden per-VM object
// (vmExtension, type "VirtualMachineExtension", same moref value) that implements the method: vcsim
// still checks the session and encodes the answer and faults as for any other method.

const (
	cbtBlock      = 64 * 1024 // granularity of changed areas, as vSphere reports them
	extensionType = "VirtualMachineExtension"
	quiesceFails  = "quiesce-fails" // in a VM's name or annotation: quiesced snapshots fail
	quiesceError  = "An error occurred while quiescing the virtual machine. See the virtual machine's event log for details."
)

// thisType matches the type of a request's _this (pyVmomi and govmomi write <_this type="...">).
var thisType = regexp.MustCompile(`(<(?:[\w.-]+:)?_this\b[^>]*?\btype=")VirtualMachine(")`)

// changeIDPattern is vSphere's change id: "<16 bytes in hex pairs, a dash after 8>/<sequence>".
var changeIDPattern = regexp.MustCompile(`^((?:[0-9a-f]{2} ){7}[0-9a-f]{2}-(?:[0-9a-f]{2} ){7}[0-9a-f]{2})/([0-9]+)$`)

// interceptor is the simulator's HTTP handler: it adds ranged PUTs to /folder (recording writes for
// change tracking) and routes the SOAP methods above to vmExtension; the rest goes to vcsim.
type interceptor struct {
	next    http.Handler
	tracker *changeTracker
	stores  map[string]map[string]string // datacenter (escaped name) -> datastore -> local directory
	users   map[string]string            // login name -> password (REST sign-in)
}

func (h *interceptor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/sdk"):
		h.serveSDK(w, r)
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/folder/"):
		h.servePut(w, r)
	case r.Method == http.MethodPost && r.URL.Path == "/rest/com/vmware/cis/session" && r.URL.Query().Get("~action") == "":
		// vapi/simulator signs in any non-empty user name and password; vCenter checks them.
		name, password, ok := r.BasicAuth()
		if known, exists := h.users[name]; !ok || !exists || known != password {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"type":"com.vmware.vapi.std.errors.unauthenticated","value":{"messages":[]}}`)
			return
		}
		h.next.ServeHTTP(w, r)
	default:
		h.next.ServeHTTP(w, r)
	}
}

func (h *interceptor) serveSDK(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	// A cheap test first: most requests (bulk property reads among them) are passed through unparsed.
	if bytes.Contains(body, []byte("QueryChangedDiskAreas")) || bytes.Contains(body, []byte("CreateSnapshot_Task")) {
		body = h.reroute(body)
	} else if wantsInstant(body) {
		body = rerouteInstant(body, h.tracker) // NAS datastores, RegisterVM, storage vMotion (instant.go)
	} else if bytes.Contains(body, []byte("Login")) {
		body = rerouteLogin(body) // more than one user (privileges.go)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	h.next.ServeHTTP(w, r)
}

// reroute returns body with _this pointing at the VM's extension object when the extension
// implements the request; otherwise body unchanged.
func (h *interceptor) reroute(body []byte) []byte {
	method, err := simulator.UnmarshalBody(types.TypeFunc(), body)
	if err != nil || method.This.Type != "VirtualMachine" {
		return body
	}
	vm, ok := simulator.Map.Get(method.This).(*simulator.VirtualMachine)
	if !ok {
		return body // vcsim answers ManagedObjectNotFound
	}
	switch req := method.Body.(type) {
	case *types.QueryChangedDiskAreas:
	case *types.CreateSnapshot_Task:
		if !req.Quiesce || !failsQuiesce(vm) {
			return body
		}
	default:
		return body
	}
	ref := types.ManagedObjectReference{Type: extensionType, Value: method.This.Value}
	if simulator.Map.Get(ref) == nil {
		simulator.Map.Put(&vmExtension{ExtensibleManagedObject: mo.ExtensibleManagedObject{Self: ref}, self: ref, tracker: h.tracker})
	}
	return thisType.ReplaceAll(body, []byte("${1}"+extensionType+"${2}"))
}

func failsQuiesce(vm *simulator.VirtualMachine) bool {
	var text string
	simulator.Map.WithLock(vm, func() {
		text = vm.Name
		if vm.Config != nil {
			text += "\n" + vm.Config.Annotation
		}
	})
	return strings.Contains(strings.ToLower(text), quiesceFails)
}

// servePut writes a datastore file as vcsim does (create or replace), or only the byte range of a
// Content-Range header ("bytes START-END/TOTAL", TOTAL may be "*"), and records the bytes written
// for change tracking.
func (h *interceptor) servePut(w http.ResponseWriter, r *http.Request) {
	file, status := h.localPath(r)
	if status == http.StatusOK && h.readOnly(r) {
		status = http.StatusForbidden
	}
	if status != http.StatusOK {
		w.WriteHeader(status)
		return
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	var err error
	if cr := r.Header.Get("Content-Range"); cr != "" {
		err = h.writeRange(file, cr, r.Body)
	} else {
		err = h.writeWhole(file, r.Body)
	}
	if errors.Is(err, errBadRange) {
		w.WriteHeader(http.StatusBadRequest)
	} else if err != nil {
		log.Printf("PUT %s: %s", file, err)
		w.WriteHeader(http.StatusInternalServerError)
	}
}

var errBadRange = errors.New("bad Content-Range, or a body of another length")

func (h *interceptor) writeRange(file, contentRange string, body io.Reader) error {
	var start, end int64
	var total string
	if n, _ := fmt.Sscanf(contentRange, "bytes %d-%d/%s", &start, &end, &total); n != 3 || start < 0 || end < start {
		return errBadRange
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return err
	}
	n, err := io.CopyN(f, body, end-start+1)
	h.tracker.record(file, start, n) // what was written counts, even if the body was short
	if err == io.EOF {
		return errBadRange
	}
	return err
}

func (h *interceptor) writeWhole(file string, body io.Reader) error {
	var before int64
	if info, err := os.Stat(file); err == nil {
		before = info.Size()
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(f, body)
	if before > n {
		n = before // a shorter file: its old tail now reads as zeros, so it changed too
	}
	h.tracker.record(file, 0, n)
	return err
}

// localPath maps /folder/<path>?dcPath=..&dsName=.. to a file inside the datastore's directory.
func (h *interceptor) localPath(r *http.Request) (string, int) {
	q := r.URL.Query()
	dir, ok := h.stores[q.Get("dcPath")][q.Get("dsName")]
	if !ok {
		ds, found := mountedDatastore(q.Get("dcPath"), q.Get("dsName"))
		if !found {
			return "", http.StatusNotFound
		}
		dir = filepath.Clean(datastoreURL(ds)) // a NAS datastore mounted since start (instant.go)
	}
	file := filepath.Join(dir, strings.TrimPrefix(r.URL.Path, "/folder/"))
	if !strings.HasPrefix(file, dir+string(filepath.Separator)) {
		return "", http.StatusForbidden // ".." out of the datastore
	}
	return file, http.StatusOK
}

// readOnly tells whether the request's datastore is mounted read-only (a NAS datastore).
func (h *interceptor) readOnly(r *http.Request) bool {
	q := r.URL.Query()
	ds, found := mountedDatastore(q.Get("dcPath"), q.Get("dsName"))
	return found && readOnlyMount(ds)
}

// mountedDatastore finds a datastore by datacenter (as dcPath) and name.
func mountedDatastore(dcPath, name string) (*simulator.Datastore, bool) {
	for _, e := range simulator.Map.All("Datacenter") {
		if dc, ok := e.(*simulator.Datacenter); ok && dc.Name == dcPath {
			ds, ok := simulator.Map.FindByName(name, dc.Datastore).(*simulator.Datastore)
			return ds, ok
		}
	}
	return nil, false
}

// vmExtension implements, for one VM, the methods vcsim 0.24.2 lacks (see interceptor).
// The embedded mo type comes first: vcsim digs one out of every registry object it scans (see
// SearchIndex.FindByDatastorePath, which RegisterVM_Task calls), and panics on a struct without.
type vmExtension struct {
	mo.ExtensibleManagedObject
	self    types.ManagedObjectReference
	tracker *changeTracker
}

func (x *vmExtension) Reference() types.ManagedObjectReference { return x.self }

func (x *vmExtension) vm() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "VirtualMachine", Value: x.self.Value}
}

// CreateSnapshotTask is only reached for quiesced snapshots of VMs that fail them: it returns a task
// that fails with ApplicationQuiesceFault, as vSphere's does when the guest cannot quiesce.
func (x *vmExtension) CreateSnapshotTask(req *types.CreateSnapshot_Task) soap.HasFault {
	body := new(methods.CreateSnapshot_TaskBody)
	vm, ok := simulator.Map.Get(x.vm()).(*simulator.VirtualMachine)
	if !ok {
		body.Fault_ = simulator.Fault("", &types.ManagedObjectNotFound{Obj: x.vm()})
		return body
	}
	task := simulator.CreateTask(vm, "createSnapshot", nil)
	simulator.Map.Update(task, []types.PropertyChange{
		{Name: "info.startTime", Val: time.Now()},
		{Name: "info.state", Val: types.TaskInfoStateRunning},
	})
	simulator.Map.Update(task, []types.PropertyChange{
		{Name: "info.completeTime", Val: time.Now()},
		{Name: "info.state", Val: types.TaskInfoStateError},
		{Name: "info.error", Val: types.LocalizedMethodFault{Fault: &types.ApplicationQuiesceFault{}, LocalizedMessage: quiesceError}},
	})
	body.Res = &types.CreateSnapshot_TaskResponse{Returnval: task.Self}
	return body
}

// QueryChangedDiskAreas answers from the change tracker (see changeTracker.query).
func (x *vmExtension) QueryChangedDiskAreas(req *types.QueryChangedDiskAreas) soap.HasFault {
	body := new(methods.QueryChangedDiskAreasBody)
	info, msg, fault := x.tracker.query(x.vm(), req)
	if fault != nil {
		body.Fault_ = simulator.Fault(msg, fault)
		return body
	}
	body.Res = &types.QueryChangedDiskAreasResponse{Returnval: *info}
	return body
}

// changeTracker keeps changed block tracking for the disks of VMs with config.changeTrackingEnabled,
// keyed by the disk's local flat file ("<disk>-flat.vmdk"). Time is cut into periods: writes go to
// the current one, and a snapshot closes it, its disks being stamped "<epoch>/<period>". Changes
// since such an id, up to a snapshot stamped "<epoch>/<m>", are the periods after it, up to m.
// The epoch is new whenever tracking (re)starts, which makes older ids stale, as on vSphere.
//
// It is a Registry handler: it sees ReconfigVM/CreateVM tasks finish (tracking switched on or off,
// disks added or removed), snapshots being taken, and VMs being removed.
type changeTracker struct {
	mu       sync.Mutex
	disks    map[string]*diskTrack
	vmDisks  map[types.ManagedObjectReference][]string
	maxAreas int // changed areas per answer: vCenter answers large queries in parts
}

type diskTrack struct {
	epoch   string
	periods []bitset // blocks written in each period; the last one is the current one
}

func newChangeTracker(maxAreas int) *changeTracker {
	if maxAreas <= 0 {
		maxAreas = 2000
	}
	return &changeTracker{disks: map[string]*diskTrack{}, vmDisks: map[types.ManagedObjectReference][]string{}, maxAreas: maxAreas}
}

func (t *changeTracker) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "ChangeTracker", Value: "changeTracker"}
}

func (t *changeTracker) PutObject(mo.Reference) {}

func (t *changeTracker) RemoveObject(ref types.ManagedObjectReference) {
	if ref.Type == "VirtualMachine" {
		t.mu.Lock()
		t.forget(ref)
		t.mu.Unlock()
	}
}

// UpdateObject runs in the goroutine that finishes the task, which holds the VM's lock: the VM and
// its snapshots are read here without taking it again.
func (t *changeTracker) UpdateObject(o mo.Reference, changes []types.PropertyChange) {
	task, ok := o.(*mo.Task)
	if !ok || task.Info.Entity == nil || !finishedWith(changes, types.TaskInfoStateSuccess) {
		return
	}
	result, _ := task.Info.Result.(types.ManagedObjectReference)
	if task.Info.DescriptionId == "VirtualMachine.createSnapshot" && result.Type == "VirtualMachineSnapshot" {
		t.snapshotTaken(result)
	}
	for _, ref := range []types.ManagedObjectReference{*task.Info.Entity, result} { // result: CreateVM, CloneVM, ...
		if ref.Type == "VirtualMachine" {
			if vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine); ok {
				layOutDisks(vm)
			}
			t.sync(ref)
		}
	}
}

// layOutDisks gives a VM's disks the files vSphere has: vcsim creates "<disk>.vmdk" and
// "<disk>-flat.vmdk" empty; the descriptor gets a monolithic flat VMFS text, and the flat file the
// disk's capacity (sparse: zeros, no space used). Made directly, so change tracking sees no write;
// files that already have content are left alone.
func layOutDisks(vm *simulator.VirtualMachine) {
	if vm.Config == nil {
		return
	}
	for _, d := range vm.Config.Hardware.Device {
		disk, ok := d.(*types.VirtualDisk)
		if !ok {
			continue
		}
		flat, ok := flatFile(vm, disk)
		if !ok {
			continue
		}
		capacity := diskCapacity(disk)
		if info, err := os.Stat(flat); err == nil && info.Size() < capacity {
			_ = os.Truncate(flat, capacity)
		}
		descriptor := strings.TrimSuffix(flat, "-flat.vmdk") + ".vmdk"
		if info, err := os.Stat(descriptor); err == nil && info.Size() == 0 {
			_ = os.WriteFile(descriptor, []byte(vmdkDescriptor(filepath.Base(flat), capacity)), 0o600)
		}
	}
}

// vmdkDescriptor is what ESXi writes next to a "<disk>-flat.vmdk" (as tools/diskimages.py does).
func vmdkDescriptor(flatName string, capacity int64) string {
	sectors := capacity / 512
	cylinders := sectors / (255 * 63)
	if cylinders > 65535 {
		cylinders = 65535
	}
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s:%d", flatName, capacity)))
	return fmt.Sprintf(`# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=%x
parentCID=ffffffff
isNativeSnapshot="no"
createType="vmfs"

# Extent description
RW %d VMFS "%s"

# The Disk Data Base
#DDB

ddb.adapterType = "lsilogic"
ddb.geometry.cylinders = "%d"
ddb.geometry.heads = "255"
ddb.geometry.sectors = "63"
ddb.thinProvisioned = "1"
ddb.virtualHWVersion = "13"
`, sum[:4], sectors, flatName, cylinders)
}

func finishedWith(changes []types.PropertyChange, state types.TaskInfoState) bool {
	for _, change := range changes {
		if change.Name == "info.state" {
			return fmt.Sprint(change.Val) == string(state)
		}
	}
	return false
}

// sync starts tracking the disks of a VM with tracking enabled that are not tracked yet, and stops
// tracking disks that are gone or whose VM has it disabled (their change ids become stale).
func (t *changeTracker) sync(ref types.ManagedObjectReference) {
	var files []string
	vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	if ok && vm.Config != nil && vm.Config.ChangeTrackingEnabled != nil && *vm.Config.ChangeTrackingEnabled {
		for _, d := range vm.Config.Hardware.Device {
			if disk, ok := d.(*types.VirtualDisk); ok {
				if file, ok := flatFile(vm, disk); ok {
					files = append(files, file)
				}
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	kept := map[string]*diskTrack{}
	for _, file := range files {
		if track := t.disks[file]; track != nil && contains(t.vmDisks[ref], file) {
			kept[file] = track
		}
	}
	t.forget(ref)
	for _, file := range files {
		if kept[file] != nil {
			t.disks[file] = kept[file]
		} else {
			t.disks[file] = &diskTrack{epoch: newEpoch(), periods: []bitset{nil}}
		}
	}
	if len(files) > 0 {
		t.vmDisks[ref] = files
	}
}

// forget stops tracking a VM's disks; t.mu is held.
func (t *changeTracker) forget(ref types.ManagedObjectReference) {
	for _, file := range t.vmDisks[ref] {
		delete(t.disks, file)
	}
	delete(t.vmDisks, ref)
}

// snapshotTaken freezes the snapshot's devices (vcsim shares them with the VM) and stamps each
// tracked disk with its change id, which also ends the disk's current period.
func (t *changeTracker) snapshotTaken(ref types.ManagedObjectReference) {
	snapshot, ok := simulator.Map.Get(ref).(*simulator.VirtualMachineSnapshot)
	if !ok {
		return
	}
	vm, ok := simulator.Map.Get(snapshot.Vm).(*simulator.VirtualMachine)
	if !ok {
		return
	}
	devices := make([]types.BaseVirtualDevice, len(snapshot.Config.Hardware.Device))
	for i, d := range snapshot.Config.Hardware.Device {
		devices[i] = copyDevice(d)
		if disk, ok := devices[i].(*types.VirtualDisk); ok {
			if file, ok := flatFile(vm, disk); ok {
				setChangeID(disk, t.stamp(file))
			}
		}
	}
	snapshot.Config.Hardware.Device = devices
}

// stamp returns a disk's change id ("" when not tracked) and starts its next period.
func (t *changeTracker) stamp(file string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	track := t.disks[file]
	if track == nil {
		return ""
	}
	id := fmt.Sprintf("%s/%d", track.epoch, len(track.periods)-1)
	track.periods = append(track.periods, nil)
	return id
}

// record marks the blocks of [offset, offset+length) of a flat file as written in its current period.
func (t *changeTracker) record(file string, offset, length int64) {
	if length <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if track := t.disks[file]; track != nil {
		current := &track.periods[len(track.periods)-1]
		current.setRange(offset/cbtBlock, (offset+length-1)/cbtBlock)
	}
}

// query implements QueryChangedDiskAreas for a VM: the areas of disk deviceKey, as the snapshot has
// it (or as the VM has it now, without one), that changed since changeId; "*" means every area that
// holds data (non-zero 64 KiB blocks of the flat file, read now: vcsim's snapshots do not freeze
// disks). An answer covers [startOffset, startOffset+length) with at most maxAreas areas; the client
// asks again from there. Faults as vSphere's: FileFault when tracking is off or was reset since
// changeId or the snapshot, InvalidArgument for a malformed or future changeId or a wrong argument.
func (t *changeTracker) query(ref types.ManagedObjectReference, req *types.QueryChangedDiskAreas) (*types.DiskChangeInfo, string, types.BaseMethodFault) {
	vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		return nil, "", &types.ManagedObjectNotFound{Obj: ref}
	}
	var disk *types.VirtualDisk
	var snapshotID string
	var msg string
	var fault types.BaseMethodFault
	simulator.Map.WithLock(vm, func() {
		disk, snapshotID, msg, fault = queriedDisk(vm, req)
	})
	if fault != nil {
		return nil, msg, fault
	}
	capacity := diskCapacity(disk)
	if req.StartOffset < 0 || req.StartOffset >= capacity {
		return nil, "startOffset is outside the disk", &types.InvalidArgument{InvalidProperty: "startOffset"}
	}
	file, ok := flatFile(vm, disk)
	if !ok {
		return nil, "the disk has no flat file", &types.FileFault{}
	}
	fileName := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo).GetVirtualDeviceFileBackingInfo().FileName
	changed, msg, fault := t.changedBlocks(file, fileName, snapshotID, req.Snapshot != nil, req.ChangeId)
	if fault != nil {
		return nil, msg, fault
	}
	if req.ChangeId == "*" {
		changed = allocatedBlocks(file, req.StartOffset, capacity)
	}
	return t.answer(changed, req.StartOffset, capacity), "", nil
}

// queriedDisk finds the disk in the snapshot's devices (or the VM's) and the snapshot's change id
// for it; the VM's lock is held.
func queriedDisk(vm *simulator.VirtualMachine, req *types.QueryChangedDiskAreas) (*types.VirtualDisk, string, string, types.BaseMethodFault) {
	devices := vm.Config.Hardware.Device
	if req.Snapshot != nil {
		snapshot, ok := simulator.Map.Get(*req.Snapshot).(*simulator.VirtualMachineSnapshot)
		if !ok {
			return nil, "", "", &types.ManagedObjectNotFound{Obj: *req.Snapshot}
		}
		if snapshot.Vm != vm.Self {
			return nil, "", "the snapshot is not one of this VM's", &types.InvalidArgument{InvalidProperty: "snapshot"}
		}
		devices = snapshot.Config.Hardware.Device
	}
	for _, d := range devices {
		if disk, ok := d.(*types.VirtualDisk); ok && disk.Key == req.DeviceKey {
			return disk, changeID(disk), "", nil
		}
	}
	return nil, "", fmt.Sprintf("no disk with key %d", req.DeviceKey), &types.InvalidArgument{InvalidProperty: "deviceKey"}
}

// changedBlocks returns the blocks written after changeId up to the snapshot's change id (or up to
// now without a snapshot); for "*" only the checks are made.
func (t *changeTracker) changedBlocks(file, fileName, snapshotID string, withSnapshot bool, changeID string) (bitset, string, types.BaseMethodFault) {
	t.mu.Lock()
	defer t.mu.Unlock()
	track := t.disks[file]
	if track == nil {
		return nil, "change tracking is not enabled for this disk", &types.FileFault{File: fileName}
	}
	upper := len(track.periods) - 1 // now: the current period included
	if withSnapshot {
		m := changeIDPattern.FindStringSubmatch(snapshotID)
		if m == nil || m[1] != track.epoch {
			return nil, "the snapshot was taken while change tracking was off (or before it was reset)", &types.FileFault{File: fileName}
		}
		upper = atoi(m[2])
	}
	if changeID == "*" {
		return nil, "", nil
	}
	m := changeIDPattern.FindStringSubmatch(changeID)
	if m == nil {
		return nil, "A specified parameter was not correct: changeId", &types.InvalidArgument{InvalidProperty: "changeId"}
	}
	if m[1] != track.epoch {
		return nil, "change tracking was reset since this changeId", &types.FileFault{File: fileName}
	}
	since := atoi(m[2])
	if since > upper {
		return nil, "A specified parameter was not correct: changeId", &types.InvalidArgument{InvalidProperty: "changeId"}
	}
	var changed bitset
	for _, period := range track.periods[since+1 : upper+1] {
		changed.or(period)
	}
	return changed, "", nil
}

// answer lists the changed blocks from startOffset as areas (runs of blocks), at most maxAreas.
func (t *changeTracker) answer(changed bitset, startOffset, capacity int64) *types.DiskChangeInfo {
	info := &types.DiskChangeInfo{StartOffset: startOffset, Length: capacity - startOffset}
	blocks := (capacity + cbtBlock - 1) / cbtBlock
	for b := startOffset / cbtBlock; b < blocks; b++ {
		if !changed.has(b) {
			continue
		}
		if len(info.ChangedArea) == t.maxAreas {
			info.Length = b*cbtBlock - startOffset // the rest is for the next call
			break
		}
		first := b
		for b+1 < blocks && changed.has(b+1) {
			b++
		}
		start, end := first*cbtBlock, (b+1)*cbtBlock
		if start < startOffset {
			start = startOffset
		}
		if end > capacity {
			end = capacity
		}
		info.ChangedArea = append(info.ChangedArea, types.DiskChangeExtent{Start: start, Length: end - start})
	}
	return info
}

// allocatedBlocks returns the blocks of a flat file from start's on that hold data (not all zeros).
func allocatedBlocks(file string, start, capacity int64) bitset {
	var blocks bitset
	f, err := os.Open(file)
	if err != nil {
		return blocks
	}
	defer f.Close()
	buf := make([]byte, 16*cbtBlock)
	zero := make([]byte, cbtBlock)
	for offset := start / cbtBlock * cbtBlock; offset < capacity; offset += int64(len(buf)) {
		n, _ := f.ReadAt(buf, offset)
		if n == 0 {
			break
		}
		for i := 0; i < n; i += cbtBlock {
			block := buf[i:min64(int64(i+cbtBlock), int64(n))]
			if !bytes.Equal(block, zero[:len(block)]) {
				blocks.setRange((offset+int64(i))/cbtBlock, (offset+int64(i))/cbtBlock)
			}
		}
	}
	return blocks
}

// flatFile is the local path of a disk's "<disk>-flat.vmdk" (vcsim's layout, as vSphere's).
func flatFile(vm *simulator.VirtualMachine, disk *types.VirtualDisk) (string, bool) {
	backing, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo)
	if !ok {
		return "", false
	}
	var p object.DatastorePath
	if !p.FromString(backing.GetVirtualDeviceFileBackingInfo().FileName) {
		return "", false
	}
	ds, ok := simulator.Map.FindByName(p.Datastore, vm.Datastore).(*simulator.Datastore)
	if !ok {
		return "", false
	}
	flat := strings.TrimSuffix(p.Path, ".vmdk") + "-flat.vmdk"
	return filepath.Join(ds.Info.GetDatastoreInfo().Url, flat), true
}

func diskCapacity(disk *types.VirtualDisk) int64 {
	if disk.CapacityInBytes > 0 {
		return disk.CapacityInBytes
	}
	return disk.CapacityInKB * 1024
}

// changeID and setChangeID read and write backing.changeId, a field of most disk backings.
func changeID(disk *types.VirtualDisk) string {
	if field := changeIDField(disk); field.IsValid() {
		return field.String()
	}
	return ""
}

func setChangeID(disk *types.VirtualDisk, id string) {
	if field := changeIDField(disk); field.IsValid() && field.CanSet() {
		field.SetString(id)
	}
}

func changeIDField(disk *types.VirtualDisk) reflect.Value {
	if disk.Backing == nil {
		return reflect.Value{}
	}
	field := reflect.ValueOf(disk.Backing).Elem().FieldByName("ChangeId")
	if field.Kind() != reflect.String {
		return reflect.Value{}
	}
	return field
}

// copyDevice copies a device (and a disk's backing), so that a snapshot's config no longer shares
// them with the VM's: vcsim copies only the config struct, and later edits of the VM's devices (or
// a change id stamped on the next snapshot) would show through.
func copyDevice(d types.BaseVirtualDevice) types.BaseVirtualDevice {
	c := shallowCopy(d).(types.BaseVirtualDevice)
	if disk, ok := c.(*types.VirtualDisk); ok && disk.Backing != nil {
		disk.Backing = shallowCopy(disk.Backing).(types.BaseVirtualDeviceBackingInfo)
	}
	return c
}

func shallowCopy(v interface{}) interface{} {
	src := reflect.ValueOf(v).Elem()
	dst := reflect.New(src.Type())
	dst.Elem().Set(src)
	return dst.Interface()
}

// newEpoch returns the first part of a change id: 16 random bytes as vSphere prints them.
func newEpoch() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	pairs := make([]string, len(b))
	for i, x := range b {
		pairs[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(pairs[:8], " ") + "-" + strings.Join(pairs[8:], " ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func min64(a, b int64) int64 {
	if a < b {
		return a
	}
	return b
}

// bitset is a growable set of block numbers.
type bitset []uint64

func (s *bitset) setRange(first, last int64) {
	for need := last/64 + 1; int64(len(*s)) < need; {
		*s = append(*s, 0)
	}
	for b := first; b <= last; b++ {
		(*s)[b/64] |= 1 << uint(b%64)
	}
}

func (s bitset) has(b int64) bool {
	return b/64 < int64(len(s)) && s[b/64]&(1<<uint(b%64)) != 0
}

func (s *bitset) or(other bitset) {
	for int64(len(*s)) < int64(len(other)) {
		*s = append(*s, 0)
	}
	for i, word := range other {
		(*s)[i] |= word
	}
}

// ---- TLS ----

// loadOrCreateCert returns the certificate in certFile/keyFile, or creates a self-signed one for
// localhost, 127.0.0.1, ::1 and host and writes it there, so a restarted simulator given the same
// files presents the same certificate (and thumbprint), as a real vCenter does.
func loadOrCreateCert(certFile, keyFile, host string) (tls.Certificate, error) {
	if cert, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
		return cert, nil
	} else if !os.IsNotExist(err) {
		if _, statErr := os.Stat(certFile); statErr == nil {
			return tls.Certificate{}, fmt.Errorf("-tls-cert: %w", err)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	template := x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"VM Backup vCenter simulator"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // self-signed: lets a client trust it as its own CA (tests do)
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if ip := net.ParseIP(host); ip != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
		template.IPAddresses = append(template.IPAddresses, ip)
	} else if ip == nil && host != "" && host != "localhost" {
		template.DNSNames = append(template.DNSNames, host)
	}
	der, err := x509.CreateCertificate(rand.Reader, &template, &template, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// thumbprint is the certificate's SHA-256 as vSphere shows it: "AA:BB:...".
func thumbprint(cert tls.Certificate) string {
	sum := sha256.Sum256(cert.Certificate[0])
	hexes := make([]string, len(sum))
	for i, b := range sum {
		hexes[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(hexes, ":")
}

// ---- main ----

type options struct {
	listen, specFile, manifestFile, username, password, dsRoot string
	tls                                                        bool
	certFile, keyFile                                          string
	extraUsers                                                 userList
}

func main() {
	var o options
	flag.StringVar(&o.listen, "listen", "127.0.0.1:0", "host:port to serve on (port 0 picks a free port)")
	flag.StringVar(&o.specFile, "spec", "", "JSON inventory spec")
	flag.StringVar(&o.manifestFile, "manifest", "", "where to write the JSON manifest")
	flag.StringVar(&o.username, "username", "user", "user name accepted by Login (Admin on the root folder)")
	flag.StringVar(&o.password, "password", "pass", "that user's password")
	flag.Var(&o.extraUsers, "extra-user", "NAME:PASSWORD of another user, with no permission until one is set (repeatable)")
	flag.StringVar(&o.dsRoot, "datastore-dir", "", "parent directory for datastore directories (default: system temp)")
	flag.BoolVar(&o.tls, "tls", false, "serve HTTPS with a self-signed certificate")
	flag.StringVar(&o.certFile, "tls-cert", "", "PEM certificate for -tls; created (with -tls-key) if missing")
	flag.StringVar(&o.keyFile, "tls-key", "", "PEM private key for -tls")
	flag.Parse()
	log.SetPrefix("vcsim: ")

	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

func run(o options) error {
	var s spec
	if o.specFile != "" {
		data, err := os.ReadFile(o.specFile)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(data, &s); err != nil {
			return fmt.Errorf("%s: %w", o.specFile, err)
		}
	}
	listenHost, _, err := net.SplitHostPort(o.listen)
	if err != nil {
		return fmt.Errorf("-listen: %w", err)
	}
	var cert tls.Certificate
	if o.tls {
		if o.certFile == "" || o.keyFile == "" {
			return fmt.Errorf("-tls needs -tls-cert and -tls-key")
		}
		if cert, err = loadOrCreateCert(o.certFile, o.keyFile, listenHost); err != nil {
			return err
		}
	}

	// A bare vCenter: the spec supplies every datacenter, cluster, host, datastore and VM.
	model := simulator.VPX()
	model.Datacenter, model.Cluster, model.ClusterHost, model.Host = 0, 0, 0, 0
	model.Datastore, model.Machine, model.Portgroup = 0, 0, 0
	if s.InstanceUUID != "" {
		model.ServiceContent.About.InstanceUuid = s.InstanceUUID
	}
	if err := model.Create(); err != nil {
		return err
	}
	defer model.Remove()
	simulator.Map.AddHandler(&changeVersions{pending: map[types.ManagedObjectReference]types.ManagedObjectReference{}})
	tracker := newChangeTracker(s.CBTMaxAreas)
	simulator.Map.AddHandler(tracker)
	simulator.Map.AddHandler(newGuestAgent()) // VMware Tools, heartbeat and IP after power-on (guest.go)

	ctx := context.Background()
	c, err := vim25.NewClient(ctx, model.Service)
	if err != nil {
		return err
	}
	b := &builder{ctx: ctx, c: c, dsRoot: o.dsRoot}
	instant.c = c
	defer instant.cleanup()
	defer func() {
		for _, dir := range b.dirs {
			_ = os.RemoveAll(dir)
		}
	}()
	for _, dc := range s.Datacenters {
		if err := b.datacenter(dc); err != nil {
			return err
		}
	}

	registerOverrides(model)
	users, err := registerPrivileges(model, o.username, o.password, o.extraUsers)
	if err != nil {
		return err
	}

	// Login goes to sessionLogin (privileges.go). Should it reach vcsim's: it accepts any non-empty
	// credentials while Listen.User is simulator.DefaultLogin (pointer comparison, see
	// SessionManager.validLogin); a fresh Userinfo makes it check these exactly.
	model.Service.Listen = &url.URL{Host: o.listen, User: url.UserPassword(o.username, o.password)}
	model.Service.TLS = nil
	if o.tls {
		model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	// vCenter's REST API under /rest (vapi/simulator, imported for its init): sessions and tagging.
	model.Service.RegisterEndpoints = true
	server := model.Service.NewServer()
	// Set before the ready line is printed: no client knows the port yet.
	server.Config.Handler = &interceptor{next: server.Config.Handler, tracker: tracker, stores: b.stores(), users: users}

	host, port, _ := net.SplitHostPort(server.URL.Host)
	b.out.URL = fmt.Sprintf("%s://%s/sdk", server.URL.Scheme, server.URL.Host)
	if o.manifestFile != "" {
		if err := writeJSON(o.manifestFile, b.out); err != nil {
			return err
		}
	}
	ready := struct {
		Host       string `json:"host"`
		Port       int    `json:"port"`
		Username   string `json:"username"`
		Password   string `json:"password"`
		URL        string `json:"url"`
		Protocol   string `json:"protocol"`
		Thumbprint string `json:"thumbprint,omitempty"`
		CertFile   string `json:"cert_file,omitempty"`
	}{host, atoi(port), o.username, o.password, b.out.URL, server.URL.Scheme, "", ""}
	if o.tls {
		ready.Thumbprint, ready.CertFile = thumbprint(cert), o.certFile
	}
	line, _ := json.Marshal(ready)
	fmt.Println(string(line)) // os.Stdout is unbuffered: this line is flushed

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	// Drop every connection at once, as a vCenter going down does: server.Close() would wait for
	// pending requests, such as a WaitForUpdatesEx blocked for its maxWaitSeconds.
	_ = server.Listener.Close()
	server.CloseClientConnections()
	return nil // deferred: remove datastore directories
}

func writeJSON(file string, v any) error {
	data, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, file) // readers never see a half-written manifest
}

func atoi(s string) int {
	var n int
	_, _ = fmt.Sscan(s, &n)
	return n
}
