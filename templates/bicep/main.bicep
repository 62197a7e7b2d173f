// EMRsim on Azure: App Service (with a staging slot, VNet-integrated, autoscaled),
// PostgreSQL Flexible Server (private endpoint, Entra ID sign-in, zone-redundant HA),
// Storage for backups and two Key Vaults behind private endpoints, a VNet with private DNS
// zones, Log Analytics + Application Insights alerts, and optionally Azure Load Testing.
// Parameters come from environments/<env>.toml, rendered by `emrops provision render`.
targetScope = 'resourceGroup'

@description('Environment name, used in resource names and tags.')
@allowed([
  'staging'
  'production'
])
param environmentName string

@description('Azure region for every resource.')
param location string = resourceGroup().location

@description('Short prefix for resource names (letters and digits).')
@minLength(3)
@maxLength(12)
param namePrefix string = 'emrsim'

@description('App Service plan SKU; slots need Standard (S1) or higher.')
param appServiceSku string = 'S1'

@description('Number of App Service instances, the autoscale minimum (health check needs two or more).')
@minValue(1)
@maxValue(10)
param appInstanceCount int = 2

@description('PostgreSQL major version.')
param postgresVersion string = '16'

@description('PostgreSQL compute SKU name, e.g. Standard_B1ms or Standard_D2ds_v5.')
param postgresSkuName string = 'Standard_B1ms'

@description('PostgreSQL compute tier: Burstable, GeneralPurpose or MemoryOptimized.')
param postgresSkuTier string = 'Burstable'

@description('PostgreSQL storage size in GiB.')
@minValue(32)
param postgresStorageGb int = 32

@description('PostgreSQL backup retention in days.')
@minValue(7)
@maxValue(35)
param postgresBackupRetentionDays int = 7

@description('Geo-redundant PostgreSQL backups (production).')
param postgresGeoRedundantBackup bool = false

@description('Zone-redundant high availability for PostgreSQL (needs GeneralPurpose or MemoryOptimized).')
param postgresHighAvailability bool = false

@description('Allow password sign-in to PostgreSQL besides Entra ID (never in production).')
param postgresPasswordAuth bool = false

@description('PostgreSQL administrator login name (only with password authentication).')
param postgresAdminLogin string = 'emrsimadmin'

@description('PostgreSQL administrator password (only with password authentication): from the environment or a Key Vault reference, never a file.')
@secure()
param postgresAdminPassword string = ''

@description('Object id of the PostgreSQL Entra ID administrator: the deployment identity or an operators group.')
param postgresEntraAdminObjectId string

@description('Display name of the PostgreSQL Entra ID administrator (the role name it signs in as).')
param postgresEntraAdminName string

@description('Principal type of the PostgreSQL Entra ID administrator.')
@allowed([
  'Group'
  'User'
  'ServicePrincipal'
])
param postgresEntraAdminType string = 'Group'

@description('PostgreSQL extensions the server may create (azure.extensions allow-list).')
param postgresExtensions array = [
  'CITEXT'
]

@description('age identity (secret key) that decrypts backups: stored only in the restore vault, which the app cannot read.')
@secure()
param backupEncryptionKey string

@description('age recipient (public key) the app encrypts backups to; empty: backups are not encrypted.')
param backupRecipient string = ''

@description('Bearer token of the sim API (EMROPS_SIM_TOKEN): from the environment or a Key Vault reference.')
@secure()
param simToken string

@description('Object id of the operator or restore identity: the only reader of the restore vault.')
param restoreOperatorObjectId string

@description('Address space of the virtual network.')
param vnetAddressPrefix string = '10.40.0.0/16'

@description('Subnets inside vnetAddressPrefix: app (VNet integration), endpoints (private endpoints), ops (the runner for backups, migrations, restores).')
param vnetSubnetPrefixes object = {
  app: '10.40.0.0/24'
  endpoints: '10.40.1.0/24'
  ops: '10.40.2.0/24'
}

@description('Storage and Key Vault also accept public traffic from allowedIpRanges (staging); off: private endpoints only (production). PostgreSQL is private either way.')
param publicDataAccess bool = false

@description('IPv4 addresses or CIDR ranges admitted to Storage and Key Vault when publicDataAccess is on.')
param allowedIpRanges array = []

@description('Spread the App Service plan over availability zones (Premium v3).')
param appZoneRedundant bool = false

@description('Autoscale the App Service plan between appInstanceCount and autoscaleMaxInstances.')
param autoscaleEnabled bool = false

@description('Most App Service instances autoscale may run.')
@minValue(1)
@maxValue(30)
param autoscaleMaxInstances int = 10

@description('Create an Azure Load Testing resource (for `emrops loadtest cloud`).')
param loadTestingEnabled bool = false

@description('Redundancy of the backup storage account: Standard_GZRS (zones + paired region) in production, so backups outlive a zone and a region; Standard_LRS where cost matters more (staging).')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param backupStorageSku string = 'Standard_GZRS'

@description('Days back the backups container can be restored to (blob point-in-time restore, change feed); 0: off.')
@minValue(0)
@maxValue(13)
param backupPointInTimeRestoreDays int = 7

@description('Days before backups move to the cool tier.')
param backupCoolAfterDays int = 30

@description('Days before backups are deleted.')
param backupDeleteAfterDays int = 365

@description('E-mail address that receives alerts.')
param alertEmail string

@description('Minutes without a backup heartbeat before the backup alert fires.')
param backupHeartbeatMinutes int = 1500

@description('CanNotDelete locks on the data resources: PostgreSQL server, backup storage account, both Key Vaults (production).')
param lockDataResources bool = false

@description('Tags added to every resource.')
param extraTags object = {}

var tags = union(extraTags, {
  application: 'emrsim'
  environment: environmentName
  'managed-by': 'emrops'
})
var suffix = uniqueString(resourceGroup().id)

module monitor 'modules/monitor.bicep' = {
  name: 'monitor'
  params: {
    location: location
    tags: tags
    baseName: '${namePrefix}-${environmentName}-${suffix}'
    alertEmail: alertEmail
    backupHeartbeatMinutes: backupHeartbeatMinutes
    telemetryPublisherPrincipalId: appIdentity.properties.principalId
  }
}

module network 'modules/network.bicep' = {
  name: 'network'
  params: {
    location: location
    tags: tags
    vnetName: '${namePrefix}-${environmentName}-vnet'
    addressPrefix: vnetAddressPrefix
    subnetPrefixes: vnetSubnetPrefixes
  }
}

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${namePrefix}-${environmentName}-app-id'
  location: location
  tags: tags
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: tags
    accountName: take('${namePrefix}${suffix}', 24)
    skuName: backupStorageSku
    pointInTimeRestoreDays: backupPointInTimeRestoreDays
    coolAfterDays: backupCoolAfterDays
    deleteAfterDays: backupDeleteAfterDays
    logAnalyticsWorkspaceId: monitor.outputs.workspaceId
    publicAccess: publicDataAccess
    allowedIpRanges: allowedIpRanges
    contributorPrincipalId: appIdentity.properties.principalId
    lock: lockDataResources
  }
}

module postgres 'modules/postgres.bicep' = {
  name: 'postgres'
  params: {
    location: location
    tags: tags
    serverName: '${namePrefix}-${environmentName}-pg-${suffix}'
    version: postgresVersion
    skuName: postgresSkuName
    skuTier: postgresSkuTier
    storageGb: postgresStorageGb
    backupRetentionDays: postgresBackupRetentionDays
    geoRedundantBackup: postgresGeoRedundantBackup
    highAvailability: postgresHighAvailability
    passwordAuth: postgresPasswordAuth
    adminLogin: postgresAdminLogin
    adminPassword: postgresAdminPassword
    entraAdminObjectId: postgresEntraAdminObjectId
    entraAdminName: postgresEntraAdminName
    entraAdminType: postgresEntraAdminType
    extensions: postgresExtensions
    logAnalyticsWorkspaceId: monitor.outputs.workspaceId
    lock: lockDataResources
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    tags: tags
    vaultName: take('${namePrefix}-kv-${suffix}', 24)
    secretValues: union({
      'sim-token': simToken
    }, postgresPasswordAuth ? {
      'database-password': postgresAdminPassword
    } : {})
    readerPrincipalIds: [
      appIdentity.properties.principalId
    ]
    readerPrincipalType: 'ServicePrincipal'
    logAnalyticsWorkspaceId: monitor.outputs.workspaceId
    publicAccess: publicDataAccess
    allowedIpRanges: allowedIpRanges
    lock: lockDataResources
  }
}

module restoreVault 'modules/keyvault.bicep' = {
  name: 'restore-vault'
  params: {
    location: location
    tags: tags
    vaultName: take('${namePrefix}-rkv-${suffix}', 24)
    secretValues: {
      'backup-age-identity': backupEncryptionKey
    }
    readerPrincipalIds: [
      restoreOperatorObjectId
    ]
    logAnalyticsWorkspaceId: monitor.outputs.workspaceId
    publicAccess: publicDataAccess
    allowedIpRanges: allowedIpRanges
    lock: lockDataResources
  }
}

module postgresEndpoint 'modules/privateendpoint.bicep' = {
  name: 'postgres-endpoint'
  params: {
    location: location
    tags: tags
    name: '${namePrefix}-${environmentName}-pg-pe'
    subnetId: network.outputs.endpointSubnetId
    targetId: postgres.outputs.id
    groupId: 'postgresqlServer'
    dnsZoneId: network.outputs.postgresZoneId
  }
}

module blobEndpoint 'modules/privateendpoint.bicep' = {
  name: 'blob-endpoint'
  params: {
    location: location
    tags: tags
    name: '${namePrefix}-${environmentName}-blob-pe'
    subnetId: network.outputs.endpointSubnetId
    targetId: storage.outputs.id
    groupId: 'blob'
    dnsZoneId: network.outputs.blobZoneId
  }
}

module vaultEndpoint 'modules/privateendpoint.bicep' = {
  name: 'vault-endpoint'
  params: {
    location: location
    tags: tags
    name: '${namePrefix}-${environmentName}-kv-pe'
    subnetId: network.outputs.endpointSubnetId
    targetId: keyVault.outputs.id
    groupId: 'vault'
    dnsZoneId: network.outputs.vaultZoneId
  }
}

module restoreVaultEndpoint 'modules/privateendpoint.bicep' = {
  name: 'restore-vault-endpoint'
  params: {
    location: location
    tags: tags
    name: '${namePrefix}-${environmentName}-rkv-pe'
    subnetId: network.outputs.endpointSubnetId
    targetId: restoreVault.outputs.id
    groupId: 'vault'
    dnsZoneId: network.outputs.vaultZoneId
  }
}

module app 'modules/app.bicep' = {
  name: 'app'
  params: {
    location: location
    tags: tags
    planName: '${namePrefix}-${environmentName}-plan-${suffix}'
    siteName: '${namePrefix}-${environmentName}-${suffix}'
    skuName: appServiceSku
    instanceCount: appInstanceCount
    zoneRedundant: appZoneRedundant
    appInsightsConnectionString: monitor.outputs.appInsightsConnectionString
    keyVaultName: keyVault.outputs.vaultName
    databaseHost: postgres.outputs.fullyQualifiedDomainName
    storageBlobEndpoint: storage.outputs.blobEndpoint
    subnetId: network.outputs.appSubnetId
    identityId: appIdentity.id
    identityClientId: appIdentity.properties.clientId
    identityName: appIdentity.name
    backupRecipient: backupRecipient
    logAnalyticsWorkspaceId: monitor.outputs.workspaceId
  }
}

module autoscale 'modules/autoscale.bicep' = if (autoscaleEnabled) {
  name: 'autoscale'
  params: {
    tags: tags
    location: location
    baseName: '${namePrefix}-${environmentName}'
    planId: app.outputs.planId
    minInstances: appInstanceCount
    maxInstances: autoscaleMaxInstances
    actionGroupId: monitor.outputs.actionGroupId
  }
}

module loadTesting 'modules/loadtest.bicep' = if (loadTestingEnabled) {
  name: 'load-testing'
  params: {
    location: location
    tags: tags
    name: '${namePrefix}-${environmentName}-lt'
  }
}

module appAlerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    tags: tags
    baseName: '${namePrefix}-${environmentName}'
    siteId: app.outputs.siteId
    appInsightsId: monitor.outputs.appInsightsId
    actionGroupId: monitor.outputs.actionGroupId
  }
}

@description('Public host name of the production slot.')
output appHostName string = app.outputs.defaultHostName

@description('Public host name of the staging slot.')
output stagingHostName string = app.outputs.stagingHostName

@description('Name of the Web App (for `emrops deploy`).')
output siteName string = app.outputs.siteName

@description('PostgreSQL server host name (private: resolves inside the VNet).')
output postgresHost string = postgres.outputs.fullyQualifiedDomainName

@description('Storage account that holds the backups container.')
output backupStorageAccount string = storage.outputs.accountName

@description('Key Vault holding the sim token (and the database password with password auth).')
output keyVaultName string = keyVault.outputs.vaultName

@description('Key Vault holding the backup decryption identity (operator/restore principal only).')
output restoreVaultName string = restoreVault.outputs.vaultName

@description('PostgreSQL role name of the app identity (see the post-provision checklist item).')
output appIdentityName string = appIdentity.name

@description('Client id of the app identity.')
output appIdentityClientId string = appIdentity.properties.clientId

@description('Data-plane host of Azure Load Testing (emrops loadtest cloud); empty when disabled.')
output loadTestingDataPlaneUri string = loadTestingEnabled ? loadTesting.outputs.dataPlaneUri : ''

@description('Subnet for the ops runner (backups, migrations, restores run inside the VNet).')
output opsSubnetId string = network.outputs.opsSubnetId
