// Command vcsim runs govmomi's vCenter simulator (0.24.2, Debian golang-github-vmware-govmomi-dev)
// with an inventory described by a JSON spec, for the dashboard's tests and demos.
//
// It builds the inventory, writes a manifest (VM morefs, disk files, datastore directories), prints
// one JSON "ready" line on stdout and serves plain HTTP until SIGINT/SIGTERM.
// Build (GOPATH mode, offline):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$PWD/.cache/gocache go build -o .cache/bin/vcsim ./tools/vcsim
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path"
	"strings"
	"sync"
	"syscall"

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
	Datacenters []dcSpec `json:"datacenters"`
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

// ---- main ----

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "host:port to serve on (port 0 picks a free port)")
	specFile := flag.String("spec", "", "JSON inventory spec")
	manifestFile := flag.String("manifest", "", "where to write the JSON manifest")
	username := flag.String("username", "user", "the only user name accepted by Login")
	password := flag.String("password", "pass", "the only password accepted by Login")
	dsRoot := flag.String("datastore-dir", "", "parent directory for datastore directories (default: system temp)")
	flag.Parse()
	log.SetPrefix("vcsim: ")

	if err := run(*listen, *specFile, *manifestFile, *username, *password, *dsRoot); err != nil {
		log.Fatal(err)
	}
}

func run(listen, specFile, manifestFile, username, password, dsRoot string) error {
	var s spec
	if specFile != "" {
		data, err := os.ReadFile(specFile)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(data, &s); err != nil {
			return fmt.Errorf("%s: %w", specFile, err)
		}
	}
	if _, _, err := net.SplitHostPort(listen); err != nil {
		return fmt.Errorf("-listen: %w", err)
	}

	// A bare vCenter: the spec supplies every datacenter, cluster, host, datastore and VM.
	model := simulator.VPX()
	model.Datacenter, model.Cluster, model.ClusterHost, model.Host = 0, 0, 0, 0
	model.Datastore, model.Machine, model.Portgroup = 0, 0, 0
	if err := model.Create(); err != nil {
		return err
	}
	defer model.Remove()

	ctx := context.Background()
	c, err := vim25.NewClient(ctx, model.Service)
	if err != nil {
		return err
	}
	b := &builder{ctx: ctx, c: c, dsRoot: dsRoot}
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
	model.Service.Listen = &url.URL{Host: listen, User: url.UserPassword(username, password)}
	model.Service.TLS = nil
	server := model.Service.NewServer()
	defer server.Close()

	host, port, _ := net.SplitHostPort(server.URL.Host)
	b.out.URL = fmt.Sprintf("http://%s/sdk", server.URL.Host)
	if manifestFile != "" {
		if err := writeJSON(manifestFile, b.out); err != nil {
			return err
		}
	}
	ready, _ := json.Marshal(struct {
		Host     string `json:"host"`
		Port     int    `json:"port"`
		Username string `json:"username"`
		Password string `json:"password"`
		URL      string `json:"url"`
	}{host, atoi(port), username, password, b.out.URL})
	fmt.Println(string(ready)) // os.Stdout is unbuffered: this line is flushed

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	return nil // deferred: close the server, remove datastore directories
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
