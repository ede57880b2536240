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
//	   "datastores": [{"name": "ds1"}],   // VMs go on the first one, on the first cluster's hosts
//	   "folders": [{"path": "A/B",        // below the datacenter's VM folder; "" is the root
//	     "vms": [{"name": "web-01", "guest_id": "...", "cpus": 2, "memory_mb": 4096, "power_on": true,
//	              "disks_mb": [64, 16], "instance_uuid": "...", "bios_uuid": "..."}],
//	     "generate": {"count": 100, "name_prefix": "vm-", "disks_mb": [1], ...}}]}]}
//
// Beyond vcsim 0.24.2 (see registerOverrides): RetrievePropertiesEx pages by maxObjects with
// ContinueRetrievePropertiesEx, and config.changeVersion is kept up to date as vCenter does.
// Build (GOPATH mode, offline):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$PWD/.cache/gocache go build -o .cache/bin/vcsim ./tools/vcsim
package main

import (
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
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
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
}

type dcSpec struct {
	Name       string        `json:"name"`
	Clusters   []clusterSpec `json:"clusters"`
	Datastores []struct {
		Name string `json:"name"`
	} `json:"datastores"`
	Folders []folderSpec `json:"folders"`
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
		DeviceChange: diskDevices(s.DisksMB),
		InstanceUuid: s.InstanceUUID,
		Uuid:         s.BiosUUID,
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

// registerOverrides replaces or adds SOAP methods that vcsim 0.24.2 lacks; later extensions such
// as QueryChangedDiskAreas (and ExportVm) go here.
//
// Caution: the pattern of simulator/example_extend_test.go (simulator.Map.Put(&wrapper{obj}))
// breaks objects whose concrete type vcsim asserts: Map.Get(ref).(*simulator.VirtualMachine) in
// CreateSnapshot, RemoveSnapshot, Destroy, Clone, ... panics once a VM is wrapped. The
// PropertyCollector is safe to wrap (vcsim clones it per session by reflection). For VM methods,
// intercept the SOAP request in an HTTP handler around server.Config.Handler instead.
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
}

func main() {
	var o options
	flag.StringVar(&o.listen, "listen", "127.0.0.1:0", "host:port to serve on (port 0 picks a free port)")
	flag.StringVar(&o.specFile, "spec", "", "JSON inventory spec")
	flag.StringVar(&o.manifestFile, "manifest", "", "where to write the JSON manifest")
	flag.StringVar(&o.username, "username", "user", "the only user name accepted by Login")
	flag.StringVar(&o.password, "password", "pass", "the only password accepted by Login")
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

	ctx := context.Background()
	c, err := vim25.NewClient(ctx, model.Service)
	if err != nil {
		return err
	}
	b := &builder{ctx: ctx, c: c, dsRoot: o.dsRoot}
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

	// Login accepts any non-empty credentials while Listen.User is simulator.DefaultLogin (pointer
	// comparison, see SessionManager.validLogin); a fresh Userinfo makes it check these exactly.
	model.Service.Listen = &url.URL{Host: o.listen, User: url.UserPassword(o.username, o.password)}
	model.Service.TLS = nil
	if o.tls {
		model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	server := model.Service.NewServer()

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
